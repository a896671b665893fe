"""The plant floor as configured: plants and shift calendar from the [mes] section."""

from __future__ import annotations

import configparser


def plants(ini: configparser.ConfigParser) -> list[str]:
    return [code.strip() for code in ini.get("mes", "plants", fallback="").split(",") if code.strip()]


def shifts(ini: configparser.ConfigParser) -> dict[str, str]:
    """{"early": "06:00-14:00", ...} from the `shift.<name> = <start>-<end>` keys."""
    if not ini.has_section("mes"):
        return {}
    return {key.removeprefix("shift."): value for key, value in ini.items("mes") if key.startswith("shift.")}
