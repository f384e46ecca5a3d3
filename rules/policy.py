"""Load the policy files, validate them, and name them by content hash.

The hash covers every policy file byte for byte (in a fixed order, each prefixed by its name), so
a decision's `policy.sha256` identifies exactly the rules that made it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from events import describe_validation_error
from rules.governance import Governance, Resolutions
from rules.scoring_model import ScoringPolicy, compact

DEFAULT_POLICY_DIR = Path(__file__).parent / "policy"
POLICY_FILES = ("scoring.toml", "governance.toml", "resolutions.toml")


class PolicyError(Exception):
    code = "policy.invalid"


@dataclass(frozen=True)
class Policy:
    version: str
    sha256: str
    scoring: ScoringPolicy
    governance: Governance
    resolutions: Resolutions
    framework_text: dict[str, re.Pattern[str]] = field(default_factory=dict)
    framework_aliases: dict[str, str] = field(default_factory=dict)


def _parse(path: Path, raw: bytes, model: type) -> object:
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"{path}: not valid TOML: {error}") from None
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise PolicyError(f"{path}: {describe_validation_error(error)}") from None


def load_policy(directory: Path = DEFAULT_POLICY_DIR) -> Policy:
    digest = hashlib.sha256()
    raws: dict[str, bytes] = {}
    for name in POLICY_FILES:
        path = directory / name
        try:
            raws[name] = path.read_bytes()
        except OSError as error:
            raise PolicyError(f"{path}: cannot read policy file: {error.strerror}") from None
        digest.update(name.encode() + b"\n" + raws[name] + b"\n")
    scoring = _parse(directory / "scoring.toml", raws["scoring.toml"], ScoringPolicy)
    governance = _parse(directory / "governance.toml", raws["governance.toml"], Governance)
    resolutions = _parse(directory / "resolutions.toml", raws["resolutions.toml"], Resolutions)
    assert isinstance(scoring, ScoringPolicy)
    assert isinstance(governance, Governance)
    assert isinstance(resolutions, Resolutions)
    keywords = {name: [k.lower() for k in fw.keywords] for name, fw in governance.compliance.items()}
    framework_text = {name: re.compile("|".join(rf"\b{re.escape(k)}\b" for k in words))
                      for name, words in keywords.items() if words}
    aliases = {compact(name): name for name in governance.compliance}
    for name, words in keywords.items():
        aliases.update({compact(word): name for word in words})
    return Policy(version=scoring.policy.version, sha256=digest.hexdigest(), scoring=scoring,
                  governance=governance, resolutions=resolutions,
                  framework_text=framework_text, framework_aliases=aliases)


@lru_cache(maxsize=4)
def default_policy() -> Policy:
    return load_policy(DEFAULT_POLICY_DIR)
