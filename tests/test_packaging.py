"""The Lambda zip: deterministic bytes, the right contents, and it really runs in isolation."""

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

from local.data_plane.mariadb import MariaDBServer
from modules.packaging import PackagingError, build_handler_zip
from modules.project import REPO_ROOT

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
    top_level = {name for name in names if "/" not in name}
    assert top_level == {
        "app.py",
        "app_contract.py",
        "app_db.py",
        "app_iam.py",
        "app_logging.py",
        "app_schema.py",
        "app_settings.py",
        "app_store.py",
    }
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
        or (name.endswith(("RECORD", "requirements.txt", "__init__.py")) and "/" not in name)
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
    with pytest.raises(PackagingError, match=r"no app\.py"):
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


def test_extracted_zip_runs_the_handler_against_mariadb(built, mariadb: MariaDBServer, tmp_path: Path) -> None:
    task_root = tmp_path / "var_task"
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(task_root)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DB_HOST": mariadb.host,
        "DB_PORT": str(mariadb.port),
        "DB_NAME": mariadb.database,
        "DB_USER": mariadb.app_user,
        "DB_PASSWORD": mariadb.app_password,
        "DB_AUTH": "password",
        "DB_TABLE": "zip_smoke",
    }
    code = (
        "import json, app, mysql.connector\n"
        "assert mysql.connector.__file__.startswith(sys.path[0]), mysql.connector.__file__\n"
        "assert 'boto3' not in sys.modules\n"
        "r = app.lambda_handler({'requestContext': {'http': {'method': 'GET'}}}, None)\n"
        "print(json.dumps({'status': r['statusCode'], 'body': json.loads(r['body']),"
        " 'cext': mysql.connector.HAVE_CEXT}))\n"
    )
    result = _run_isolated(code, task_root, env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 200 and outcome["body"]["count"] >= 1
    assert outcome["cext"] is False


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
    env = {
        "DB_HOST": mariadb.host,
        "DB_PORT": str(mariadb.port),
        "DB_NAME": mariadb.database,
        "DB_USER": mariadb.app_user,
        "DB_PASSWORD": mariadb.app_password,
        "DB_AUTH": "password",
        "DB_TABLE": "zip_runtime_probe",
    }
    script = (
        f"import sys; sys.path.insert(0, {str(task_root)!r})\n"
        "import app\n"
        "r = app.lambda_handler({'requestContext': {'http': {'method': 'GET'}}}, None)\n"
        "print(sys.version_info[:2], r['statusCode'])\n"
    )
    result = subprocess.run(
        [interpreter, "-I", "-S", "-B", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    major, minor = version.split(".")
    assert result.stdout.strip().splitlines()[-1] == f"({major}, {minor}) 200"


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
