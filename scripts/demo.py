"""The demo: a broker, the controller and two simulated units on this machine.

Run by ``scripts/demo`` (which sets up the Python environment first). Everything lives
under ``var/demo/`` and is made anew on each run:

1. a broker on a free loopback port: Mosquitto when installed (with the controller's
   generated password and ACL files, as in the field), else the embedded amqtt broker;
2. the controller (``smartcity-controller serve``) with the two units registered and an
   admin token printed;
3. two units on mock pins, each wired to its field simulator: the example park
   (irrigation, DLH) and the example tambak (fish feeder, DP3). Their schedules are the
   example configs' with a demo programme pushed through the API, as an operator would,
   so something runs every few minutes. Everything runs in real time, so commands,
   expiry and the dashboard behave as in the field.

Ctrl-C stops everything; every simulated output is off when it exits.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.clock import SystemClock  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.daemon import build_unit  # noqa: E402
from edge.link import LinkOptions  # noqa: E402

log = logging.getLogger("demo")
VENV_BIN = Path(sys.executable).parent
WITA = ZoneInfo("Asia/Makassar")


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def wait_port(port: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def controller_cli(conf: Path, *args: str) -> str:
    out = subprocess.run([str(VENV_BIN / "smartcity-controller"), *args, "--config", str(conf)],
                         check=True, capture_output=True, text=True)
    return out.stdout


class Broker:
    """Mosquitto when installed, else amqtt in this process."""

    def __init__(self, work: Path, port: int, password_file: Path, acl_file: Path,
                 mosquitto: str | None):
        self.work, self.port, self.mosquitto = work, port, mosquitto
        self.password_file, self.acl_file = password_file, acl_file
        self.proc = None
        self.amqtt = None
        self.kind = ""

    def start(self) -> None:
        if self.mosquitto:
            self._start_mosquitto(self.mosquitto)
        else:
            self._start_amqtt()
        wait_port(self.port)

    def _start_mosquitto(self, exe: str) -> None:
        conf = self.work / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.work}/",
            "autosave_interval 10",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_queued_bytes 268435456",
            "allow_anonymous false",
            f"password_file {self.password_file}",
            f"acl_file {self.acl_file}",
            f"log_dest file {self.work}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        # A session of its own: Ctrl-C reaches the demo, which stops the broker last.
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.kind = f"Mosquitto ({exe})"

    def _start_amqtt(self) -> None:
        import asyncio

        from amqtt.broker import Broker as AmqttBroker

        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                              {"allow_anonymous": True}}}
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(loop)
            broker = AmqttBroker(config, loop=loop)
            loop.run_until_complete(broker.start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True, name="amqtt").start()
        ready.wait(15)
        self.amqtt = loop
        self.kind = "amqtt (embedded; no Mosquitto installed)"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.amqtt is not None:
            self.amqtt.call_soon_threadsafe(self.amqtt.stop)


def unit_config(example: Path, work: Path, broker_port: int, password: str,
                mqtt_version: str) -> dict:
    data = tomllib.loads(example.read_text())
    device = data["unit"]["device_id"]
    home = work / device
    home.mkdir(parents=True, exist_ok=True)
    secret = home / "mqtt.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    data["state_dir"] = str(home / "state")
    data["broker"] = {"host": "127.0.0.1", "port": broker_port, "username": device,
                      "password_file": str(secret), "keepalive_s": 10,
                      "mqtt_version": mqtt_version}
    data.setdefault("hardware", {})["pin_factory"] = "mock"
    data.setdefault("clock", {})["sync_check"] = "assume_synced"
    data.setdefault("telemetry", {})["interval_s"] = 10
    return data


def demo_times(now_local: datetime, every_min: int, count: int) -> list[str]:
    """Start times (HH:MM, local) every ``every_min`` minutes from the next slot on."""
    first = now_local.replace(second=0, microsecond=0) + timedelta(minutes=2)
    times = sorted({(first + timedelta(minutes=every_min * i)).strftime("%H:%M")
                    for i in range(count)})
    return times


class SimulatedUnit:
    """A unit built like the daemon builds it, on mock pins wired to a field simulator."""

    def __init__(self, config, example: dict):
        from edge.hardware import make_pin_factory

        self.config = config
        self.example = example
        self.clock = SystemClock()
        self.stop = threading.Event()
        self._sim_stop = None
        if config.kind == "irrigation":
            from edge.irrigation.app import IrrigationApp
            from edge.sim.irrigation import IrrigationField

            self.park = IrrigationField(config, self.clock, seed=7)
            app_class = functools.partial(IrrigationApp, soil_readers=self.park.readers())
            factory = self.park.pin_factory
        else:
            from edge.fish_feeder.app import FishFeederApp
            from edge.sim.fish_feeder import FishFeederSim

            self.park = None
            self.pond = FishFeederSim(config, self.clock, seed=7)
            app_class = functools.partial(FishFeederApp, **self.pond.app_kwargs())
            factory = make_pin_factory("mock")
        self.unit = build_unit(config, pin_factory=factory, clock=self.clock,
                               app_class=app_class, link_options=LinkOptions())
        if self.park is not None:
            self.park.connect(self.unit.app)
            original_tick = self.unit.tick

            def tick():
                self.park.sync()
                original_tick()

            self.unit.tick = tick
        else:
            self.pond.attach(self.unit.app)
        self.thread = threading.Thread(target=self._run, name=config.unit.device_id,
                                       daemon=True)

    def _run(self) -> None:
        from edge.service import run_app

        if self.park is None:
            self._sim_stop = self.pond.start_realtime()
        try:
            run_app(self.unit, stop=self.stop, tick_s=0.2, install_signals=False)
        finally:
            if self._sim_stop is not None:
                self._sim_stop.set()

    def outputs_on(self) -> list[str]:
        return [name for name, on in self.unit.app.outputs.states().items() if on]


def api(base: str, token: str, path: str, body: dict | None = None, method: str | None = None):
    req = urllib.request.Request(base + path, method=method or ("POST" if body else "GET"),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--http-port", type=int, default=8080,
                   help="dashboard port (a free one is taken if this is busy)")
    p.add_argument("--workdir", type=Path, default=ROOT / "var" / "demo")
    p.add_argument("--broker", choices=["auto", "amqtt"], default="auto",
                   help="auto: Mosquitto when installed, else the embedded amqtt broker")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker_port, http_port = free_port(), free_port(args.http_port)

    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                              if Path("/usr/sbin/mosquitto").exists() else None)
    if args.broker == "amqtt" or mosquitto is None:
        mosquitto, mqtt_version = None, "3.1.1"  # amqtt speaks MQTT 3.1.1 only
    else:
        mqtt_version = "5"
    conf = work / "controller.toml"
    secret = work / "controller-mqtt.secret"
    from controller.broker_files import new_password

    secret.write_text(new_password() + "\n")
    conf.write_text(f"""
log_level = "WARNING"
[database]
path = "{work / 'controller.db'}"
[mqtt]
host = "127.0.0.1"
port = {broker_port}
username = "smartcity-controller"
password_file = "{secret}"
client_id = "smartcity-controller-demo"
mqtt_version = "{mqtt_version}"
[api]
host = "127.0.0.1"
port = {http_port}
[broker_files]
acl_file = "{work / 'smartcity.acl'}"
password_file = "{work / 'smartcity.passwd'}"
""")

    examples = [ROOT / "config" / "irrigation.example.toml",
                ROOT / "config" / "fish_feeder.example.toml"]
    unit_dicts = []
    for example in examples:
        data = tomllib.loads(example.read_text())
        out = controller_cli(conf, "device", "add", "--opd", data["unit"]["opd"],
                             "--device-id", data["unit"]["device_id"],
                             "--kind", data["kind"], "--name", data["unit"].get("name", ""))
        password = next(line.split(": ", 1)[1] for line in out.splitlines()
                        if line.startswith("MQTT password: "))
        unit_dicts.append(unit_config(example, work, broker_port, password, mqtt_version))
    controller_cli(conf, "mqtt-acl")
    admin = controller_cli(conf, "token", "create", "--role", "admin",
                           "--name", "diskominfo-demo").splitlines()[1].strip()
    operators = {}
    for opd in ("dlh", "dp3"):
        operators[opd] = controller_cli(conf, "token", "create", "--role", "operator",
                                        "--opd", opd).splitlines()[1].strip()

    units: list[SimulatedUnit] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C: leave through the finally below
        signal.signal(sig, lambda *_: stop.set())
    broker = Broker(work, broker_port, work / "smartcity.passwd", work / "smartcity.acl",
                    mosquitto)
    controller = None
    try:
        broker.start()
        controller = subprocess.Popen([str(VENV_BIN / "smartcity-controller"), "serve",
                                       "--config", str(conf)],
                                      stdout=open(work / "controller.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(http_port, 30)
        for data in unit_dicts:
            config = parse_config(data, path=f"<demo {data['unit']['device_id']}>")
            units.append(SimulatedUnit(config, data))
        for unit in units:
            unit.thread.start()
        base = f"http://127.0.0.1:{http_port}"
        print(f"""
Smart City Balikpapan demo
  broker      {broker.kind} on 127.0.0.1:{broker_port}
  controller  {base}/api/v1   (OpenAPI: {base}/docs)
  units       {', '.join(u.config.unit.device_id for u in units)} (mock pins, simulated field)

  Dashboard:  {base}/
  Admin token (Diskominfo):   {admin}
  Operator token (DLH, parks):    {operators['dlh']}
  Operator token (DP3, ponds):    {operators['dp3']}

Press Ctrl-C to stop; every simulated output is switched off on the way out.
""", flush=True)
        t0 = time.monotonic()
        online = set()
        while not stop.is_set() and len(online) < len(units) and time.monotonic() - t0 < 60:
            devices = api(base, admin, "/api/v1/devices")
            items = devices["items"] if isinstance(devices, dict) else devices
            online = {d["device_id"] for d in items if d.get("online")}
            time.sleep(0.5)
        print(f"units online: {len(online)}/{len(units)} after {time.monotonic() - t0:.1f} s",
              flush=True)
        push_demo_programmes(base, admin, units)
        while not stop.is_set():
            stop.wait(1)
    except KeyboardInterrupt:
        pass
    finally:
        for unit in units:
            unit.stop.set()
        for unit in units:
            unit.thread.join(15)
        left_on = [f"{u.config.unit.device_id}:{o}" for u in units for o in u.outputs_on()]
        if controller is not None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(15)
            except subprocess.TimeoutExpired:
                controller.kill()
        broker.stop()
        if left_on:
            print(f"WARNING: outputs still on: {', '.join(left_on)}", flush=True)
        else:
            print("demo stopped; every simulated output is off", flush=True)
    return 0


def demo_programme(unit: SimulatedUnit, times: list[str]) -> dict | None:
    """The unit's example programme plus a short run every ten minutes, for the demo."""
    data = unit.example
    if unit.config.kind == "irrigation":
        body = json.loads(json.dumps(data["program"]))
        zones = [z["name"] for z in data["zones"]]
        body["programs"].append({"name": "demo", "start_times": times,
                                 "zones": [{"zone": z, "duration_min": 1} for z in zones]})
        return body
    return {"ponds": {pond["name"]: {"plan": {"times": times, "doses_g": [150] * len(times)}}
                      for pond in data["ponds"]}}


def push_demo_programmes(base: str, token: str, units: list[SimulatedUnit]) -> None:
    """Edit each unit's schedule through the API, as an operator would."""
    now_local = datetime.now(UTC).astimezone(WITA)
    for unit in units:
        device = unit.config.unit.device_id
        try:
            body = demo_programme(unit, demo_times(now_local, 10, 12))
            if body is not None:
                api(base, token, f"/api/v1/devices/{device}/schedule", {"body": body}, "PUT")
        except Exception as exc:  # noqa: BLE001 - the demo goes on with the example schedule
            log.warning("could not push the demo programme to %s: %s", device, exc)


if __name__ == "__main__":
    sys.exit(main())
