"""Load only the provider-binding submodules the stack uses.

``import cdktf_cdktf_provider_aws`` runs a package ``__init__`` that imports all ~2,100 resource submodules
(~10 s, ~540 MB). Each submodule only needs the package's ``_jsii`` assembly, so we register the package as a
bare namespace (its ``__path__`` without running ``__init__``) and import the submodules we need. The
synthesized JSON is byte-identical either way (tests/modules/test_synth_identity.py proves it); set
``SMS_PLAIN_PROVIDER_IMPORT=1`` to use the plain import path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

PACKAGE = "cdktf_cdktf_provider_aws"


def _register_bare_package() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{PACKAGE} is not installed: run `pipenv install` (see README)")
    package = types.ModuleType(PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__spec__ = spec
    package.__package__ = PACKAGE
    sys.modules[PACKAGE] = package


def aws(submodule: str) -> types.ModuleType:
    """Return ``cdktf_cdktf_provider_aws.<submodule>``, e.g. ``aws("vpc").Vpc``."""
    if os.environ.get("SMS_PLAIN_PROVIDER_IMPORT") == "1":
        importlib.import_module(PACKAGE)
    else:
        _register_bare_package()
    return importlib.import_module(f"{PACKAGE}.{submodule}")
