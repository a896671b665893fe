"""The health rule of the role's verify (tasks/verify.yml): golive's own function, the one the host
agent, the collector and the checks apply (golive.agent.shared.health_problem, docs/health.md), so
both engines judge a health answer by exactly the same rule, in the same words.

The filter runs on the controller, in the Python that runs ansible-playbook, where golive is
installed (the role ships inside golive's package).
"""

from __future__ import annotations

import re

try:
    from golive.agent.shared import health_expected, health_problem
except ImportError as error:  # the role copied out of golive's package, to a Python without golive
    raise ImportError("the golive role needs golive installed in the Python that runs ansible-playbook") from error

# What the uri module puts before the reason when nothing answered.
_URI_FAILURE = re.compile(r"^Status code was \S+ and not \[[^]]*\]: (Request failed: )?")


def golive_health_problem(answer, health, meta):
    """Why the registered answer of the health URL (uri) or command (command) is unhealthy; "" when healthy."""
    answer = answer or {}
    if health.get("url"):
        status = answer.get("status", -1)
        if status == -1 or status is None:  # nothing answered: refused, timed out, not HTTP
            code, body = None, _URI_FAILURE.sub("", str(answer.get("msg") or "no answer"))
        else:
            code, body = int(status), str(answer.get("content") or "")
    elif "rc" in answer:
        code = int(answer["rc"])
        body = "\n".join(part for part in (answer.get("stdout") or "", answer.get("stderr") or "") if part)
    else:  # the task itself failed (its timeout): no exit code
        code, body = None, str(answer.get("msg") or "no answer")
    return health_problem(health, health_expected(meta, meta.get("id")), code, body)


class FilterModule:
    def filters(self):
        return {"golive_health_problem": golive_health_problem}
