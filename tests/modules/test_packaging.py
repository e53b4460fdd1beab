"""The Lambda zip: deterministic bytes, the right contents (the ``handler`` package with both entry points and the
pure-Python driver), and it really runs in isolation."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handler.app_contract import MIGRATOR_HANDLER, REQUEST_HANDLER
from local.data_plane.mariadb import MariaDBServer
from modules.packaging import PackagingError, build_handler_zip
from modules.project import REPO_ROOT
from tests.handler.handler_support import SECRET_ARN, create_master, new_table

HANDLER_DIR = REPO_ROOT / "handler"
PINNED = "26.10.0"


def copy_handler(target: Path, mtime: int, mode: int) -> Path:
    shutil.copytree(HANDLER_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.iterdir():
        path.chmod(mode)
        os.utime(path, (mtime, mtime))
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    return build_handler_zip(HANDLER_DIR, tmp_path_factory.mktemp("zip") / "handler.zip")


def test_same_inputs_give_identical_bytes_whatever_mtimes_and_modes(tmp_path: Path, built) -> None:
    first = copy_handler(tmp_path / "a", mtime=1_000_000_000, mode=0o600)
    second = copy_handler(tmp_path / "b", mtime=1_700_000_000, mode=0o755)
    (second / "__pycache__").mkdir()  # stray bytecode must not leak in
    (second / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    one = build_handler_zip(first, tmp_path / "one.zip")
    two = build_handler_zip(second, tmp_path / "out" / "two.zip")
    assert one.path.read_bytes() == two.path.read_bytes() == built.path.read_bytes()
    assert one.sha256_base64 == two.sha256_base64 == built.sha256_base64


def test_crlf_checkout_gives_the_same_zip(tmp_path: Path, built) -> None:
    crlf = copy_handler(tmp_path / "crlf", mtime=1_000_000_000, mode=0o644)
    for path in crlf.glob("*.py"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert build_handler_zip(crlf, tmp_path / "crlf.zip").sha256_base64 == built.sha256_base64


def test_handler_change_changes_the_hash(tmp_path: Path, built) -> None:
    changed = copy_handler(tmp_path / "changed", mtime=1_000_000_000, mode=0o644)
    with (changed / "app.py").open("a") as handle:
        handle.write("# a real change\n")
    assert build_handler_zip(changed, tmp_path / "changed.zip").sha256_base64 != built.sha256_base64


def test_concurrent_builds_to_one_path_leave_one_complete_zip(tmp_path: Path, built) -> None:
    out = tmp_path / "build" / "handler.zip"
    with ThreadPoolExecutor(max_workers=4) as pool:
        infos = list(pool.map(lambda _: build_handler_zip(HANDLER_DIR, out), range(4)))
    assert {info.sha256_base64 for info in infos} == {built.sha256_base64}
    assert out.read_bytes() == built.path.read_bytes()
    assert [path.name for path in out.parent.iterdir()] == ["handler.zip"]  # no temp files left
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_info_matches_the_file_like_terraform_filebase64sha256(built) -> None:
    data = built.path.read_bytes()
    assert built.sha256_base64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert built.size_bytes == len(data) < 5 * 1024 * 1024
    with zipfile.ZipFile(built.path) as archive:
        assert built.file_count == len(archive.infolist())


def test_entries_are_sorted_with_fixed_metadata(built) -> None:
    with zipfile.ZipFile(built.path) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {stat.S_IMODE(info.external_attr >> 16) for info in infos} == {0o644}
    assert {stat.S_IFMT(info.external_attr >> 16) for info in infos} == {stat.S_IFREG}
    assert not [name for name in names if name.endswith("/")]  # no directory entries


def test_contents_are_the_handler_and_the_pure_python_driver_only(built) -> None:
    with zipfile.ZipFile(built.path) as archive:
        names = set(archive.namelist())
    assert not {name for name in names if "/" not in name}  # nothing at the top level: one package, the driver
    package = {name for name in names if name.startswith("handler/")}
    assert package == {f"handler/{path.name}" for path in HANDLER_DIR.glob("*.py")}
    assert {"handler/__init__.py", "handler/app.py", "handler/migrator.py"} <= package
    for needed in (
        "mysql/__init__.py",
        "mysql/connector/__init__.py",
        "mysql/connector/connection.py",
        "mysql/connector/locales/eng/client_error.py",
        "mysql/connector/plugins/mysql_clear_password.py",
        "mysql/connector/plugins/caching_sha2_password.py",
        f"mysql_connector_python-{PINNED}.dist-info/LICENSE.txt",
        f"mysql_connector_python-{PINNED}.dist-info/METADATA",
    ):
        assert needed in names
    forbidden = [
        name
        for name in names
        if name.endswith((".so", ".pyi", ".pyc", ".txt.bak"))
        or ".so." in name
        or name.startswith(("mysqlx/", "mysql/vendor/", "mysql/ai/", "mysql/connector/aio/", "mysql/connector/django/"))
        or "__pycache__" in name
        or "/tests/" in name
        or name.endswith(("RECORD", "requirements.txt"))
    ]
    assert forbidden == []
    assert all(name.endswith(".py") or ".dist-info/" in name for name in names)


def test_driver_version_must_match_the_pin(tmp_path: Path) -> None:
    source = copy_handler(tmp_path / "h", mtime=1_000_000_000, mode=0o644)
    (source / "requirements.txt").write_text("mysql-connector-python==8.0.1\n")
    installed = importlib.metadata.version("mysql-connector-python")
    with pytest.raises(PackagingError, match=f"installed mysql-connector-python is {installed}.*pins 8.0.1"):
        build_handler_zip(source, tmp_path / "x.zip")
    (source / "requirements.txt").write_text("mysql-connector-python>=8\n")
    with pytest.raises(PackagingError, match="must pin mysql-connector-python==<version> exactly"):
        build_handler_zip(source, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_missing_handler_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="does not exist"):
        build_handler_zip(tmp_path / "nowhere", tmp_path / "x.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagingError, match=r"has no __init__\.py, app\.py, migrator\.py \(the package and its"):
        build_handler_zip(tmp_path / "empty", tmp_path / "x.zip")


def _run_isolated(code: str, path_entry: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run with only the stdlib plus ``path_entry`` importable (-I: no env/user site, -S: no site-packages)."""
    script = f"import sys; sys.path.insert(0, {str(path_entry)!r})\n{code}"
    return subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Both entry points, resolved from their handler strings as Lambda does: the migrator (its secret read replaced by
# the test's, since boto3 is not importable here), then the request function as the application user.
DEPLOY_AND_SERVE = f"""
import importlib, json, os
def entry(handler):
    module, _, function = handler.rpartition(".")
    return getattr(importlib.import_module(module), function)
migrator = importlib.import_module("handler.migrator")
assert entry({REQUEST_HANDLER!r}) and entry({MIGRATOR_HANDLER!r})
secret = migrator.AppCredentials(os.environ["APP_DB_USER"], os.environ["APP_PASSWORD"])
migrator.run(migrator.MigratorSettings.from_env(os.environ), migrator.Deadline.none(), lambda arn: secret)
os.environ.update(DB_USER=os.environ["APP_DB_USER"], DB_PASSWORD=os.environ["APP_PASSWORD"])
import mysql.connector
r = entry({REQUEST_HANDLER!r})({{"requestContext": {{"http": {{"method": "GET"}}}}}}, None)
print(json.dumps({{"status": r["statusCode"], "body": json.loads(r["body"]), "cext": mysql.connector.HAVE_CEXT,
    "driver": mysql.connector.__file__, "boto3": "boto3" in sys.modules, "version": list(sys.version_info[:2])}}))
"""


def deploy_env(mariadb: MariaDBServer, table: str) -> dict[str, str]:
    accounts = create_master(mariadb)
    return {
        "PATH": os.environ.get("PATH", ""),
        "DB_HOST": mariadb.host,
        "DB_PORT": str(mariadb.port),
        "DB_NAME": mariadb.database,
        "DB_USER": accounts.master,
        "DB_PASSWORD": accounts.master_password,
        "DB_AUTH": "password",
        "DB_TABLE": table,
        "APP_DB_USER": accounts.app_user,
        "APP_DB_SECRET_ARN": SECRET_ARN,
        "APP_PASSWORD": accounts.app_password,
    }


def test_extracted_zip_migrates_and_serves_against_mariadb(built, mariadb: MariaDBServer, tmp_path: Path) -> None:
    task_root = tmp_path / "var_task"
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(task_root)
    result = _run_isolated(DEPLOY_AND_SERVE, task_root, deploy_env(mariadb, new_table()), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert (outcome["status"], outcome["body"]["count"]) == (200, 1)
    assert outcome["driver"].startswith(str(task_root)) and outcome["cext"] is False and outcome["boto3"] is False


def _interpreter(version: str) -> str | None:
    """A working ``pythonX.Y`` (PATH, else a pyenv install), or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "pass"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.12", "3.13"])  # the Lambda runtimes the stack allows
def test_zip_runs_on_the_lambda_python_versions(built, mariadb: MariaDBServer, tmp_path: Path, version: str) -> None:
    interpreter = _interpreter(version)
    if interpreter is None:
        pytest.skip(f"python{version} not installed")
    task_root = tmp_path / "var_task"
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(task_root)
    script = f"import sys; sys.path.insert(0, {str(task_root)!r})\n{DEPLOY_AND_SERVE}"
    result = subprocess.run(
        [interpreter, "-I", "-S", "-B", "-c", script],
        cwd=tmp_path,
        env=deploy_env(mariadb, new_table()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert (outcome["version"], outcome["status"]) == ([int(part) for part in version.split(".")], 200)


def test_zipimport_of_the_driver_connects_in_pure_mode(built, mariadb: MariaDBServer, tmp_path: Path) -> None:
    code = (
        "import mysql.connector\n"
        "assert mysql.connector.__file__.startswith(sys.path[0])\n"
        f"c = mysql.connector.connect(host={mariadb.host!r}, port={mariadb.port}, user={mariadb.app_user!r},"
        f" password={mariadb.app_password!r}, database={mariadb.database!r}, use_pure=True)\n"
        "cur = c.cursor(); cur.execute('SELECT 40 + 2'); print(type(c).__name__, cur.fetchone()[0]); c.close()\n"
    )
    result = _run_isolated(code, built.path, {"PATH": os.environ.get("PATH", "")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MySQLConnection", "42"]
