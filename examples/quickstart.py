"""One request's life on the mock provider, driven the way Host Factory drives ohfp.

    pip install ohfp-core ohfp-mock      # or: nox -s quickstart, from a checkout
    python examples/quickstart.py [--keep DIR]

It lays out a provider instance as Host Factory does (``HF_PROVIDER_NAME``, ``…_CONFDIR``,
``…_WORKDIR``, ``…_LOGDIR``), writes the five scripts with ``ohfp hf scripts --provider mock``,
then runs them with ``-f <input.json>``, printing each command and its JSON reply:
getAvailableTemplates → requestMachines → getRequestStatus until complete → requestReturnMachines
→ getRequestStatus until complete → a reclaim by the (simulated) cloud → getReturnRequests.
The mock's clock is moved with ``python -m ohfp_mock advance`` instead of waiting for boots.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

INSTANCE = "mockinst"


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.scripts = root / "scripts"
        self.env = {
            **os.environ,
            "HF_PROVIDER_NAME": INSTANCE,
            "HF_PROVIDER_CONFDIR": str(root / "conf"),
            "HF_PROVIDER_WORKDIR": str(root / "work"),
            "HF_PROVIDER_LOGDIR": str(root / "log"),
        }
        for name in ("conf", "work", "log"):
            (root / name).mkdir(parents=True, exist_ok=True)

    def shell(self, *command: str) -> Any:
        """Run a command, show it, return its JSON output."""
        shown = " ".join(shlex.quote(part) for part in command).replace(str(self.root), "$DEMO")
        print(f"\n$ {shown}")
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            sys.exit(f"failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    def hf(self, call: str, payload: Any) -> Any:
        """Host Factory's way: write the input to a file, run ``<call>.sh -f <file>``."""
        path = self.root / f"{call}.in.json"
        path.write_text(json.dumps(payload))
        print(f"\n# {call} input: {json.dumps(payload)}")
        reply = self.shell(str(self.scripts / f"{call}.sh"), "-f", str(path))
        print(json.dumps(reply, indent=2))
        return reply

    def mock(self, *args: str) -> Any:
        """The mock cloud's control CLI (what a real cloud does on its own)."""
        return self.shell(
            sys.executable, "-m", "ohfp_mock", "--workdir", self.env["HF_PROVIDER_WORKDIR"], *args
        )

    def until_done(self, request_id: str) -> dict[str, Any]:
        for _ in range(10):
            [entry] = self.hf("getRequestStatus", {"requests": [{"requestId": request_id}]})["requests"]
            if entry["status"] != "running":
                return dict(entry)
            self.mock("advance", "30")  # 30 simulated seconds: boots and shutdowns finish
        sys.exit(f"{request_id} did not finish")


def run(root: Path) -> None:
    demo = Demo(root)
    print(f"DEMO={root}")
    # The instance's config, in IBM's file naming: boots take 30 simulated seconds.
    (root / "conf" / f"{INSTANCE}prov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 30}))
    ohfp = Path(sys.executable).with_name("ohfp")
    demo.shell(
        str(ohfp) if ohfp.exists() else "ohfp", "hf", "scripts", "--provider", "mock", str(demo.scripts)
    )

    templates = demo.hf("getAvailableTemplates", {})["templates"]
    # A spot template: only spot machines get interruption notices, as on a real cloud.
    template_id = next(t["templateId"] for t in templates if t.get("priceType") == "spot")
    request_id = demo.hf("requestMachines", {"template": {"templateId": template_id, "machineCount": 3}})[
        "requestId"
    ]
    machines = demo.until_done(request_id)["machines"]

    hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    return_id = demo.hf("requestReturnMachines", {"machines": hosts[:2]})["requestId"]
    demo.until_done(return_id)

    print("\n# The cloud takes the third machine back (a spot interruption with 120 s notice):")
    demo.mock("reclaim", hosts[2]["machineId"], "--grace", "120")
    reclaims = demo.hf("getReturnRequests", {"machines": hosts[2:]})["requests"]
    print(f"\nDone: {len(hosts)} machines acquired, 2 returned, {len(reclaims)} reclaimed by the cloud.")
    print("State in $DEMO/work, logs in $DEMO/log (use --keep DIR to keep them).")


def main() -> None:
    parser = argparse.ArgumentParser(description="ohfp quickstart on the mock provider")
    parser.add_argument("--keep", type=Path, help="lay the instance out in this directory and keep it")
    args = parser.parse_args()
    if args.keep:
        run(args.keep.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="ohfp-quickstart-") as tmp:
        run(Path(tmp))


if __name__ == "__main__":
    main()
