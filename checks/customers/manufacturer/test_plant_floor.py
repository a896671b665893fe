"""Huaxin's own check: the shop-floor home page lists every plant the inventory names."""


def test_home_page_lists_every_plant(golive, fetch):
    status, page = fetch("/")
    assert status == 200, f"the home page answers {status}: {page[-200:]}"
    missing = [code for code in golive.vars.get("plant_codes") or [] if code not in page]
    assert not missing, f"the home page does not list plant(s) {', '.join(missing)}"
