"""`sdcli serve` and the warm path of `sdcli generate`: a real worker process on a private temp socket,
real client processes, and what they print compared with a cold run in this process."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdcli.worker import protocol
from sdcli.worker.client import UnixConnection
from tests.png_helpers import params_and_record, pixels

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CLIENT = """
import sys
sys.argv = ["sdcli", *sys.argv[1:]]
from sdcli.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = ",".join(m for m in ("torch", "diffusers", "transformers") if m in sys.modules) or "none"
sys.stderr.write(f"HEAVY {heavy}\\n")
sys.exit(code)
"""
TIMES = re.compile(r'("seconds": )[0-9.]+|written in [0-9.]+s')


def env_for(socket_path: Path | str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SDCLI_WORKER": str(socket_path)}


def connectable(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


TOKEN = "test-token-" + "7f3a9c0e5b1d"  # the worker must never print it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_worker(
    folder: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], Path]:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "w.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "sdcli", "serve", "--socket", str(path), "--keep-alive", "-1", *extra],
        env={**env_for("off"), **(env or {})},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not connectable(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    return process, path


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


PORT = free_port()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, tiny_sd: Path):
    process, path = start_worker(
        tmp_path_factory.mktemp("worker") / "run",
        *("-m", str(tiny_sd), "--listen", f"127.0.0.1:{PORT}"),
        env={"SDCLI_WORKER_TOKEN": TOKEN},
    )
    # Warm it up once, so the tests below time only warm calls.
    folder = tmp_path_factory.mktemp("warmup")
    done = client(path, folder, "generate", "warm", "-m", tiny_sd, "--steps", "1", "--seed", "1")
    assert done.returncode == 0, done.stderr
    yield path
    stop(process)
    stdout, stderr = process.communicate()
    assert TOKEN not in stdout + stderr


def client(
    socket_path: Path | str, cwd: Path, *args: object, **popen: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLIENT, *map(str, args)],
        env=env_for(socket_path),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        **popen,  # type: ignore[arg-type]
    )


def split_heavy(stderr: str) -> tuple[str, str]:
    *rest, last = stderr.splitlines(keepends=True)
    assert last.startswith("HEAVY "), stderr
    return "".join(rest), last.split()[1]


def test_socket_is_private(worker: Path) -> None:
    assert stat.S_ISSOCK(worker.lstat().st_mode)
    assert stat.S_IMODE(worker.lstat().st_mode) == 0o600
    assert stat.S_IMODE(worker.parent.lstat().st_mode) == 0o700


def test_warm_run_prints_and_writes_what_a_cold_run_does(
    worker: Path, cli, tiny_sd: Path, tmp_path: Path
) -> None:
    args = (
        "generate",
        "a cat",
        "-m",
        tiny_sd,
        "--steps",
        "2",
        "--seed",
        "7",
        "-c",
        "2",
        "-o",
        "cats/{seed}.png",
    )
    warm_dir = tmp_path / "warm"
    warm_dir.mkdir()
    for extra in ((), ("--json",)):
        warm = client(worker, warm_dir, *args, *extra, "--overwrite")
        warm_err, heavy = split_heavy(warm.stderr)
        assert warm.returncode == 0, warm.stderr
        assert heavy == "none", "the warm client imported torch"
        cold = cli(*args, *extra, "--overwrite")  # in tmp_path; SDCLI_WORKER=off there
        assert cold.exit_code == 0, cold.stderr
        assert TIMES.sub(r"\1X", warm.stdout) == TIMES.sub(r"\1X", cold.stdout)
        assert TIMES.sub(r"\1X", warm_err) == TIMES.sub(r"\1X", cold.stderr)
    for seed in (7, 8):
        name = f"cats/{seed}.png"
        assert (pixels(warm_dir / name) == pixels(tmp_path / name)).all()
        warm_text, warm_record = params_and_record(warm_dir / name)
        cold_text, cold_record = params_and_record(tmp_path / name)
        warm_record.pop("timings"), cold_record.pop("timings")
        assert warm_record == cold_record and warm_text == cold_text
    assert not list(warm_dir.glob("cats/.*"))  # no temporary files left


def test_exists_check_and_usage_errors_stay_in_the_client(
    worker: Path, tiny_sd: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken.png").write_bytes(b"x")
    taken = client(worker, tmp_path, "generate", "a cat", "-m", tiny_sd, "-o", "taken.png")
    assert taken.returncode == 6 and "taken.png already exists" in taken.stderr
    bad = client(worker, tmp_path, "generate", "a cat", "-m", tiny_sd, "--steps", "0")
    assert bad.returncode == 2 and split_heavy(bad.stderr)[0] == "error: --steps must be at least 1, got 0\n"


def test_two_clients_at_once_are_queued(
    worker: Path, cli, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [("a cat", "11"), ("a dog", "21")]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLIENT,
                "generate",
                prompt,
                "-m",
                str(tiny_sd),
                "--steps",
                "3",
                "--seed",
                seed,
            ]
            + ["-c", "3", "-o", f"{seed}-{{index}}.png", "--json"],
            env=env_for(worker),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prompt, seed in args
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        assert [json.loads(line)["type"] for line in stdout.splitlines()] == ["image"] * 3 + ["summary"]
    cold = tmp_path / "cold"
    cold.mkdir()
    monkeypatch.chdir(cold)
    for prompt, seed in args:
        assert (
            cli("generate", prompt, "-m", tiny_sd, "--steps", "3", "--seed", seed, "-c", "3").exit_code == 0
        )
    cold_images = sorted((cold / "outputs").glob("*.png"))
    warm_images = sorted(tmp_path.glob("*.png"))
    assert len(cold_images) == len(warm_images) == 6
    by_seed = {params_and_record(p)[1]["seed"]: pixels(p) for p in cold_images}
    for path in warm_images:  # interleaving two runs on one pipeline would change the pixels
        assert (pixels(path) == by_seed[params_and_record(path)[1]["seed"]]).all(), path.name


def slow_run_under_way(worker: Path, tiny_sd: Path, cwd: Path) -> subprocess.Popen[str]:
    """A client asking for 50 slow images, once the worker has written the first."""
    long = subprocess.Popen(
        [sys.executable, "-c", CLIENT, "generate", "slow", "-m", str(tiny_sd), "--steps", "40", "-c", "50"]
        + ["--seed", "3", "-o", "slow-{index}.png"],
        env=env_for(worker),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(cwd.glob("slow-*.png")):
        assert long.poll() is None and time.monotonic() < deadline, long.communicate()
        time.sleep(0.05)
    return long


def test_ctrl_c_in_the_client_cancels_the_run_on_the_worker(
    worker: Path, tiny_sd: Path, tmp_path: Path
) -> None:
    long = slow_run_under_way(worker, tiny_sd, tmp_path)
    long.send_signal(signal.SIGINT)
    stdout, stderr = long.communicate(timeout=60)
    assert long.returncode == 130, stderr
    assert "interrupted" in stderr and "every written image is complete" in stderr
    # The worker stopped that run: the next request is served at once, and no more slow images appear.
    began = time.monotonic()
    quick = client(worker, tmp_path, "generate", "quick", "-m", tiny_sd, "--steps", "1", "-o", "quick.png")
    assert quick.returncode == 0, quick.stderr
    assert time.monotonic() - began < 30
    written = len(list(tmp_path.glob("slow-*.png")))
    time.sleep(1)
    assert len(list(tmp_path.glob("slow-*.png"))) == written < 50


def post(path: Path, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    connection = UnixConnection(str(path), timeout=30)
    try:
        connection.request("POST", protocol.RUN_PATH, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def run_body(tmp_path: Path, tiny_sd: Path, **changes: object) -> bytes:
    from sdcli import __version__

    body = {
        "protocol": protocol.PROTOCOL,
        "version": __version__,
        "model": {"model": str(tiny_sd)},
        "root": str(tmp_path),
        "overwrite": False,
        "explicit": True,
        "with_metadata": True,
        "keep_filtered": False,
        "offline": False,
        "jobs": [{"request": {"prompt": "x", "steps": 1, "seed": 1}, "paths": ["x.png"], "line": 0}],
    }
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"jobs": [{"request": {"prompt": "x", "seed": 1}, "paths": ["../x.png"]}]},
            "leaves the output folder",
        ),
        (
            {"jobs": [{"request": {"prompt": "x", "seed": 1}, "paths": ["/etc/x.png"]}]},
            "leaves the output folder",
        ),
        (
            {"jobs": [{"request": {"prompt": "x", "seed": 1}, "paths": ["link/x.png"]}]},
            "leads out of the output",
        ),
        (
            {"jobs": [{"request": {"prompt": "x", "seed": 1, "steps": 0}, "paths": ["x.png"]}]},
            "--steps must be",
        ),
        ({"jobs": [{"request": {"prompt": "x", "seed": 1, "steps": "2"}, "paths": ["x.png"]}]}, "wrong type"),
        ({"model": {"model": "m", "device": "tpu"}}, "is not a device"),
        ({"root": "relative"}, "root must be an absolute folder"),
        ({"surprise": 1}, "unknown field"),
        ({"version": "0.0.0"}, "restart the worker"),
    ],
)
def test_bad_requests_are_refused_on_one_line(
    worker: Path, tiny_sd: Path, tmp_path: Path, changes: dict, says: str
) -> None:
    (tmp_path / "link").symlink_to(tmp_path.parent)
    status, body = post(worker, run_body(tmp_path, tiny_sd, **changes))
    message = json.loads(body)["error"]
    assert status == 400 and says in message and "\n" not in message
    assert list(tmp_path.iterdir()) == [tmp_path / "link"]  # nothing written


def test_not_json_and_too_large_bodies_are_refused(worker: Path) -> None:
    status, body = post(worker, b"{not json")
    assert status == 400 and "not JSON" in json.loads(body)["error"]
    status, body = post(worker, b" " * (protocol.MAX_BODY_BYTES + 1))
    assert status == 413
    status, body = post(worker, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    status, body = tcp("POST", "/sdapi/v1/txt2img", b'{"prompt": "x", "steps": 1e400}')
    assert status == 400


def test_a_refused_request_exits_2_with_one_line(
    worker: Path, tiny_sd: Path, tmp_path: Path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from sdcli.cli import app
    from sdcli.worker import client

    monkeypatch.setenv("SDCLI_WORKER", str(worker))
    monkeypatch.setattr(client, "__version__", "0.0.0")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["generate", "a cat", "-m", str(tiny_sd), "--steps", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the worker refused the request: the client is sdcli 0.0.0")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").iterdir())


def test_an_explicit_worker_that_is_not_there_is_an_error(tiny_sd: Path, tmp_path: Path) -> None:
    gone = client(tmp_path / "nobody.sock", tmp_path, "generate", "a cat", "-m", tiny_sd, "--steps", "1")
    assert gone.returncode == 1 and "no worker answers on" in gone.stderr
    assert split_heavy(gone.stderr)[1] == "none"


def test_a_worker_killed_mid_request_gives_a_clear_error_and_no_partial_file(
    tmp_path: Path, tiny_sd: Path
) -> None:
    process, path = start_worker(tmp_path / "run")
    try:
        out = tmp_path / "out"
        out.mkdir()
        long = slow_run_under_way(path, tiny_sd, out)
        process.kill()
        stdout, stderr = long.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert long.returncode == 1, stderr
    assert "error: the worker stopped before the run finished" in stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    printed = stdout.splitlines()
    assert printed and all((out / line).is_file() for line in printed)


def test_listen_needs_a_token(cli, monkeypatch) -> None:
    monkeypatch.delenv("SDCLI_WORKER_TOKEN", raising=False)
    result = cli("serve", "--listen", "127.0.0.1:7860")
    assert result.exit_code == 2 and "error: --listen needs a token" in result.stderr


def tcp(method: str, path: str, body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_tcp_needs_the_token(worker: Path) -> None:
    assert tcp("GET", protocol.HEALTH_PATH, token=None)[0] == 401
    status, body = tcp("GET", protocol.HEALTH_PATH, token=TOKEN + "x")
    assert status == 401 and TOKEN.encode() not in body
    assert tcp("GET", protocol.HEALTH_PATH)[0] == 200


def decode_png(text: str):
    import base64
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im.convert("RGB")), json.loads(im.text["sdcli"])


def test_a1111_txt2img_gives_the_cli_s_pixels(worker: Path, cli, tiny_sd: Path, tmp_path: Path) -> None:
    payload = {
        "prompt": "a cat",
        "steps": 2,
        "width": 64,
        "height": 64,
        "seed": 5,
        "cfg_scale": 6,
        "n_iter": 2,
    }
    status, body = tcp("POST", "/sdapi/v1/txt2img", json.dumps(payload).encode())
    assert status == 200, body
    answer = json.loads(body)
    info = json.loads(answer["info"])
    assert info["all_seeds"] == [5, 6] and len(answer["images"]) == 2
    assert info["infotexts"][0].startswith("a cat\nSteps: 2, ")
    cold = cli("generate", "a cat", "-m", tiny_sd, "--steps", "2", "--seed", "5", "--cfg", "6", "-c", "2")
    assert cold.exit_code == 0, cold.stderr
    for text, path in zip(answer["images"], cold.stdout.split(), strict=True):
        served, record = decode_png(text)
        assert (served == pixels(tmp_path / path)).all()
        assert record["seed"] == params_and_record(tmp_path / path)[1]["seed"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_openai_generations_and_their_limits(worker: Path) -> None:
    status, body = tcp("POST", "/v1/images/generations", b'{"prompt": "a dog", "size": "64x64", "n": 2}')
    assert status == 200, body
    data = json.loads(body)["data"]
    assert len(data) == 2 and decode_png(data[0]["b64_json"])[0].shape == (64, 64, 3)
    for bad, says in (
        ({"prompt": "a dog", "size": "64x64", "response_format": "url"}, "b64_json"),
        ({"prompt": "a dog", "size": "9000x64"}, "over this worker's limit"),
        ({"prompt": "a dog", "size": "big"}, "is not WIDTHxHEIGHT"),
        ({"prompt": ""}, "prompt is empty"),
    ):
        status, body = tcp("POST", "/v1/images/generations", json.dumps(bad).encode())
        assert status == 400 and says in json.loads(body)["error"]["message"], body
    status, body = tcp("POST", "/sdapi/v1/txt2img", b'{"prompt": "x", "steps": 1000}')
    assert status == 400 and "limit" in json.loads(body)["detail"]


def test_detach_starts_a_background_worker_that_generate_finds_by_itself(
    tmp_path: Path, tiny_sd: Path
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in env_for("off").items() if k != "SDCLI_WORKER"}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    started = subprocess.run(
        [sys.executable, "-m", "sdcli", "serve", "--detach"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    path = runtime / "sdcli" / "worker.sock"
    assert started.stdout == f"{path}\n"
    connection = UnixConnection(str(path), timeout=30)
    connection.request("GET", protocol.HEALTH_PATH)
    health = json.loads(connection.getresponse().read())
    connection.close()
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700
        assert stat.S_IMODE((path.parent / "worker.log").lstat().st_mode) == 0o600
        # No SDCLI_WORKER: generate finds the worker in the runtime folder (and so never imports torch).
        found = subprocess.run(
            [sys.executable, "-c", CLIENT, "generate", "a cat", "-m", str(tiny_sd), "--steps", "1"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert found.returncode == 0, found.stderr
        assert split_heavy(found.stderr)[1] == "none"
    finally:
        os.kill(health["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not path.exists()  # a worker that stops removes its socket


def test_warm_img2img_and_inpaint_match_cold_runs(worker: Path, cli, tiny_sd: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    warm_dir = tmp_path / "warm"
    warm_dir.mkdir()
    photo = np.random.default_rng(0).integers(0, 255, (70, 66, 3), dtype=np.uint8)
    mask = np.zeros((70, 66), dtype=np.uint8)
    mask[10:40, 20:50] = 255
    for folder in (tmp_path, warm_dir):
        Image.fromarray(photo).save(folder / "photo.png")
        Image.fromarray(mask).save(folder / "mask.png")
    common = (
        "-m",
        tiny_sd,
        "--steps",
        "4",
        "--seed",
        "3",
        "-c",
        "2",
        "--json",
        "-o",
        "{input}-{seed}-{index}.png",
    )
    for args in (("img2img", "a cat", "photo.png"), ("inpaint", "photo.png", "mask.png", "a cat")):
        warm = client(worker, warm_dir, *args, *common, "--overwrite")
        warm_err, heavy = split_heavy(warm.stderr)
        assert warm.returncode == 0 and heavy == "none", warm.stderr
        cold = cli(*args, *common, "--overwrite")
        assert cold.exit_code == 0, cold.stderr
        assert TIMES.sub(r"\1X", warm.stdout) == TIMES.sub(r"\1X", cold.stdout)
        assert TIMES.sub(r"\1X", warm_err) == TIMES.sub(r"\1X", cold.stderr)
        for line in cold.stdout.splitlines()[:-1]:
            name = json.loads(line)["path"]
            assert (pixels(warm_dir / name) == pixels(tmp_path / name)).all(), (args[0], name)


def test_tcp_clients_cannot_name_input_images(worker: Path, tiny_sd: Path, tmp_path: Path) -> None:
    job = {
        "request": {"prompt": "x", "seed": 1, "strength": 0.5},
        "paths": ["x.png"],
        "inputs": {"image": "/etc/x"},
    }
    body = run_body(tmp_path, tiny_sd, task="img2img", jobs=[job])
    status, answer = tcp("POST", protocol.RUN_PATH, body)
    assert status == 403 and "Unix socket only" in json.loads(answer)["error"]
    # Nor may they run anything that writes files, inputs or not.
    status, answer = tcp("POST", protocol.RUN_PATH, run_body(tmp_path, tiny_sd))
    assert status == 403 and not list(tmp_path.rglob("*.png"))


def test_a1111_img2img_gives_the_cli_s_pixels(worker: Path, cli, tiny_sd: Path, tmp_path: Path) -> None:
    import base64

    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype("uint8")
    Image.fromarray(ramp).save(tmp_path / "in.png")
    payload = {
        "prompt": "a cat",
        "init_images": [base64.b64encode((tmp_path / "in.png").read_bytes()).decode()],
        "denoising_strength": 0.5,
        "steps": 4,
        "seed": 5,
        "cfg_scale": 6,
    }
    status, body = tcp("POST", "/sdapi/v1/img2img", json.dumps(payload).encode())
    assert status == 200, body
    served, record = decode_png(json.loads(body)["images"][0])
    cold = cli(
        "img2img",
        "a cat",
        tmp_path / "in.png",
        "-m",
        tiny_sd,
        "--steps",
        "4",
        "--strength",
        "0.5",
        "--seed",
        "5",
        "--cfg",
        "6",
        "-o",
        "cold.png",
    )
    assert cold.exit_code == 0, cold.stderr
    assert (served == pixels(tmp_path / "cold.png")).all()
    assert (
        record["strength"] == 0.5
        and record["init_image"]["hash"] == params_and_record(tmp_path / "cold.png")[1]["init_image"]["hash"]
    )
    bad = dict(payload, init_images=["not base64!"])
    status, body = tcp("POST", "/sdapi/v1/img2img", json.dumps(bad).encode())
    assert status == 400 and b"not base64" in body
