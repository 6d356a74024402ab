"""function_app.py as the Functions host loads it: every function, its trigger and bindings, and
an import that reads no setting, opens no file outside the code and connects nowhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from tests.functions.conftest import ROOT, functions_of, load_function_app

CONNECTION = "AzureWebJobsStorage"


def bindings() -> dict[str, list[dict[str, Any]]]:
    return {
        name: json.loads(function.get_function_json())["bindings"]
        for name, function in functions_of(load_function_app()).items()
    }


def test_the_app_holds_each_function_with_its_trigger_and_binding_settings() -> None:
    found = bindings()

    assert set(found) == {
        "api",
        "sweep",
        "catalog",
        "remediate",
        "remediate_batch",
        "remediate_batch_poison",
        "assess_request",
    }
    (http, answer) = found["api"]
    assert http["type"] == "httpTrigger"
    assert http["authLevel"] == "FUNCTION"
    assert http["route"] == "/{*route}"  # every path under the host's routePrefix, /api
    assert set(http["methods"]) >= {"GET", "POST"}
    assert answer == {"direction": "OUT", "type": "http", "name": "$return"}
    for name, setting in [
        ("sweep", "%HOTPATCH_SWEEP_SCHEDULE%"),
        ("catalog", "%HOTPATCH_CATALOG_SCHEDULE%"),
        ("remediate", "%HOTPATCH_REMEDIATE_SCHEDULE%"),
    ]:
        (trigger,) = [b for b in found[name] if b["direction"] == "IN"]
        assert trigger == {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": setting,
            "runOnStartup": False,
            "useMonitor": True,
        }
    (queued,) = [b for b in found["remediate"] if b["direction"] == "OUT"]
    assert queued == {
        "direction": "OUT",
        "type": "queue",
        "name": "batches",
        "queueName": "hotpatch-batches",
        "connection": CONNECTION,
    }
    assert found["remediate_batch"] == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": "hotpatch-batches",
            "connection": CONNECTION,
        }
    ]
    assert found["assess_request"] == [
        {
            "direction": "OUT",
            "type": "queue",
            "name": "batches",
            "queueName": "hotpatch-batches",
            "connection": CONNECTION,
        },
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": "hotpatch-assessments",
            "connection": CONNECTION,
        },
    ]
    assert found["remediate_batch_poison"] == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": "hotpatch-batches-poison",
            "connection": CONNECTION,
        }
    ]


def test_the_schedules_name_settings_the_settings_object_holds() -> None:
    from hotpatch.settings import PREFIX, Settings

    referenced = {
        binding["schedule"].strip("%")
        for found in bindings().values()
        for binding in found
        if "schedule" in binding
    }
    assert referenced == {
        PREFIX + name.upper() for name in Settings.model_fields if name.endswith("_schedule")
    }


def test_host_json_sets_the_timeout_the_queue_retries_the_logging_and_the_bundle() -> None:
    host = json.loads((ROOT / "host.json").read_text())

    assert host["version"] == "2.0"
    assert host["functionTimeout"]
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    queues = host["extensions"]["queues"]
    assert {"batchSize", "maxDequeueCount", "visibilityTimeout"} <= set(queues)
    assert queues["maxDequeueCount"] > 1
    assert host["logging"]["logLevel"]["default"]
    assert host["extensions"]["http"]["routePrefix"] == "api"  # the API's paths start /api/


#: Imports function_app with every file opened and every connection recorded; prints what was
#: touched outside the Python installation and the code.
WATCH = textwrap.dedent(
    """
    import json, os, sys
    touched = []
    python = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
    # What the app is made of: its package, its entry point and their metadata; and read-only
    # data the code uses: the time zone database (the calendar's Pacific time).
    parts = ("hotpatch/", "function_app.py", "__pycache__/function_app.", "hotpatch.egg-info/")
    code = tuple(os.path.join(CODE, part) for part in parts)
    readable = python + code + ("/usr/share/zoneinfo/",)
    # The import system lists the directories on sys.path (the app's root among them).
    listable = readable + (CODE,)
    def hook(event, args):
        if event == "open":
            if isinstance(args[0], int):
                return
            real = os.path.realpath(os.fsdecode(args[0]))
            # The editable install's import hook is a name on sys.path, not a file.
            if not real.startswith(readable) and "/__editable__." not in real:
                touched.append(("open", real))
        elif event in ("socket.connect", "socket.getaddrinfo", "socket.bind"):
            touched.append((event, repr(args[1:2])))
        elif event in ("os.listdir", "os.scandir") and args and args[0] not in (None, ""):
            real = os.path.realpath(os.fsdecode(args[0]))
            if not real.startswith(listable):
                touched.append((event, real))
    sys.addaudithook(hook)
    sys.path.insert(0, CODE)
    import function_app
    names = sorted(f.get_function_name() for f in function_app.app.get_functions())
    from hotpatch.functions import host
    print(json.dumps({"touched": touched, "functions": names, "host": host._current is not None}))
    """
)


def test_importing_function_app_performs_no_io() -> None:
    script = WATCH.replace("CODE", repr(str(ROOT)))
    environment = {
        "PATH": "/usr/bin:/bin",
        # A store that would be created, and settings that would fail, if anything read them.
        "HOTPATCH_STORE": "/nonexistent/hotpatch-store",
        "HOTPATCH_SUBSCRIPTIONS": "not-a-guid",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={'0' * 8}-{'0' * 4}-0",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["touched"] == [], report["touched"]
    assert report["functions"] == [
        "api",
        "assess_request",
        "catalog",
        "remediate",
        "remediate_batch",
        "remediate_batch_poison",
        "sweep",
    ]
    assert report["host"] is False  # no host was made: no setting read, no store opened
