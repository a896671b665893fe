"""Ansible stdout callback for `golive ... --engine ansible`: one JSON object per line, per host and
task, for golive.engines.ansible to turn into progress and per-host reports.

Only what golive needs leaves the run: the host, the task's step (its first tag), its status, the
failure message, the golive_outcome / golive_lock_holder / golive_lock_takeover facts the role
sets, and diffs of results Ansible did not censor (no_log results never carry a diff). golive
masks every secret value in whatever it prints from here.
"""

from __future__ import annotations

import json
import os
import sys

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: golive_events
    type: stdout
    short_description: JSON lines for golive's Ansible engine
    description: One JSON object per host and task result, read by golive.engines.ansible.
"""

REPORTED_FACTS = ("golive_outcome", "golive_lock_holder", "golive_lock_takeover")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "golive_events"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fault = None
        if os.environ.get("GOLIVE_FAULT_KILL"):  # the fault tests' kill points; else inert
            from golive.adapters.faultpoints import AnsiblePoint

            self._fault = AnsiblePoint.from_environment()

    def _emit(self, event: dict) -> None:
        sys.stdout.write(json.dumps(event, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def _result(self, status: str, result, item: bool = False) -> None:
        task = result._task
        if self._fault and not item and status != "skipped":
            self._fault.task_result(task.name or "")
        data = result._result
        event = {"event": "item" if item else "result", "status": status, "host": result._host.get_name(),
                 "task": task.get_name(), "step": (task.tags or [""])[0], "changed": bool(data.get("changed"))}
        if status in ("failed", "unreachable"):
            event["msg"] = str(data.get("msg") or "")
            if status == "unreachable" and not event["msg"]:
                # a no_log task's result is censored, its reason with it: say at least where it went
                address = (getattr(result._host, "vars", None) or {}).get("ansible_host") or result._host.get_name()
                event["msg"] = f"ssh to {address} failed (the task's own output is hidden: it may hold a secret)"
            for stream in ("stdout", "stderr"):
                if data.get(stream):
                    text = str(data[stream])
                    event[stream] = text[-2000:]
                    if len(text) > 2000:  # golive masks what a cut may have left of a secret at its start
                        event[stream + "_cut"] = True
        facts = data.get("ansible_facts") or {}
        event.update({name: facts[name] for name in REPORTED_FACTS if name in facts})
        if data.get("diff") and data.get("changed") and not data.get("censored"):
            diffs = data["diff"] if isinstance(data["diff"], list) else [data["diff"]]
            event["diff"] = [self._get_diff(d) for d in diffs if d]
        if item:
            event["item"] = str(self._get_item_label(data))
        self._emit(event)

    def v2_runner_on_start(self, host, task):
        """A task starting on a host: its step shows as running on the progress table (its result,
        even `skipped`, follows)."""
        step = (task.tags or [""])[0]
        if step:
            self._emit({"event": "start", "host": host.get_name(), "task": task.get_name(), "step": step})

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._fault:
            self._fault.task_started(task.name or "")

    def v2_playbook_on_handler_task_start(self, task):
        if self._fault:
            self._fault.task_started(task.name or "")

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_item_on_ok(self, result):
        self._result("ok", result, item=True)

    def v2_runner_item_on_failed(self, result):
        self._result("failed", result, item=True)

    def v2_playbook_on_stats(self, stats):
        self._emit({"event": "stats", "failures": {h: stats.failures.get(h, 0) for h in stats.processed}})
