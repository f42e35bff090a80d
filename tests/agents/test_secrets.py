"""secrets on real git repositories: found on added lines, placeholders ignored, values never shown.

The fake credentials below are assembled from pieces so that no line of this file is
itself a secret to scanners (including ours, when mergegate checks its own changes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mergegate.core.finding import make_fingerprint
from mergegate.core.policy import PolicyError
from mergegate.core.results import AgentResult, AgentStatus
from mergegate.core.routing import Action
from mergegate.core.secret_patterns import mask
from mergegate.core.severity import Severity
from mergegate.report import FORMATS, renderer
from mergegate.service.policy_source import load_policy_text
from mergegate.store.audit_log import AuditLog
from tests.gitrepo import RepoBuilder

AGENT = "secrets"

AWS_ID = "AKIA" + "Z5QK7MNB3XRT4PLW"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYzQ8vT2mK9d"
GH = "ghp_" + "4fKx9Lm2Qz8Rt7Vb3Nw6" + "Yh1Jc5Pd0Sa2Ue4G"
GH_PAT = (
    "github_pat_" + "11u8jzPde0IgxLd6Gncf" + "BAep_fJBd0Kh8oOOL8dK" + "LzdocJ2isAjIhKtJ0Rlg" + "LKOmxgJTeKdNnFRIBXuD"
)
GL = "glpat-" + "tpYlSXpfKtHF4vUCsMeh"
SLACK = "xoxb-" + "2738465012-" + "5619283746-" + "Qm7vX2kPzR9tL4wN8cYb"
OPENAI = "sk-proj-" + "GAkWvj7FAc9QeWJKY40u" + "vSwMFLZDe1f8rESQedUS" + "tPKR0CsTy4Qwb8DwkNhF"
ANTHROPIC = (
    "sk-ant-api03-" + "0B3JrTAwR4y9ojfljoQo" + "aF1LlqsajAIxNKu8iS2G" + "8NPRVdD53X83RZJzzzzg" + "EOzdmenCkhvMdgaK-AAA"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    + ".eyJzdWIiOiI0MjQyIiwicm9sZSI6ImFkbWluIn0"
    + ".MxEhh2FDEEtfjgVvVqE1SkHbn88HxjSI6bWHtP3fS2q"
)
DB_PASSWORD = "S3cr3t" + "P4ssw0rd"
PASSWORD = "Tr0ub4dor" + "&3horse"
STRIPE = "sk_live_" + "Hx6kwXoIIXGvOoNZYW2mZp0z"
KEY_BODY = [
    "Dz/TddJ8HyS5SUkCnD8zRA9a9SkpXz9w3QlY7Zkuvqdt7s8Stqcbnr3yBdGBLEPH",
    "1qhT61qtc4xatws8phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptUsGr7CmY+u",
    "Cu3ZR1zTOlUcR64cXQLioDnkHIfxIq2HZt/PlJhx2jIclHkCiHp6bR1IqfEouHgx",
    "zNNAL5wIScGebcy8F5n3/YNBDRzrZSgqbjG3uhkWKFLf6xuI5aHUQPFeNBTxaQWk",
]
BEGIN, END = "-----BEGIN RSA " + "PRIVATE KEY-----", "-----END RSA " + "PRIVATE KEY-----"
PEM = "\n".join([BEGIN, *KEY_BODY, END]) + "\n"

ALL_SECRETS = (AWS_ID, AWS_SECRET, GH, GH_PAT, GL, SLACK, OPENAI, ANTHROPIC, JWT, DB_PASSWORD, PASSWORD, STRIPE)


def run(repo: RepoBuilder, head: str = "change") -> AgentResult:
    (result,) = repo.check([AGENT], head=head).results
    return result


def found(result: AgentResult) -> list[tuple[str, int, Severity]]:
    return [(f.rule, f.line, f.severity) for f in result.findings]


@pytest.mark.parametrize(
    ("path", "text", "rule", "line", "severity"),
    [
        ("settings.py", f'DEBUG = False\nAWS_ACCESS_KEY_ID = "{AWS_ID}"\n', "aws-access-key-id", 2, Severity.CRITICAL),
        ("deploy.ini", f"[aws]\naws_secret_access_key = {AWS_SECRET}\n", "aws-secret-access-key", 2, Severity.CRITICAL),
        (".github/ci.yml", f"env:\n  GH_TOKEN: {GH}\n", "github-token", 2, Severity.HIGH),
        ("config.json", json.dumps({"github": {"token": GH_PAT}}, indent=2), "github-token", 3, Severity.HIGH),
        ("scripts/release.sh", f"#!/bin/sh\nexport GITLAB_TOKEN={GL}\n", "gitlab-token", 2, Severity.HIGH),
        ("pyproject.toml", f'[tool.notify]\nslack = "{SLACK}"\n', "slack-token", 2, Severity.HIGH),
        (
            "web/client.js",
            f'const client = new OpenAI({{ apiKey: "{OPENAI}" }});\n',
            "openai-api-key",
            1,
            Severity.HIGH,
        ),
        (
            "llm.py",
            f'import anthropic\nclient = anthropic.Anthropic(api_key="{ANTHROPIC}")\n',
            "anthropic-api-key",
            2,
            Severity.HIGH,
        ),
        ("keys/deploy.pem", PEM, "private-key", 1, Severity.CRITICAL),
        (
            "sa.json",
            json.dumps({"type": "service_account", "private_key": PEM}, indent=2),
            "private-key",
            3,
            Severity.CRITICAL,
        ),
        ("src/auth.ts", f'export const ADMIN_TOKEN = "{JWT}";\n', "jwt", 1, Severity.HIGH),
        (
            ".env",
            f"DATABASE_URL=postgresql://app:{DB_PASSWORD}@db.internal:5432/app\n",
            "database-url-password",
            1,
            Severity.HIGH,
        ),
        (
            "db.py",
            f'def connect():\n    password = "{PASSWORD}"\n    return password\n',
            "secret-keyword",
            2,
            Severity.HIGH,
        ),
        ("billing.py", f'STRIPE_KEY = "{STRIPE}"\n', "stripe-access-key", 1, Severity.HIGH),
    ],
)
def test_added_secret_is_found_masked_and_blocks(
    repo: RepoBuilder, path: str, text: str, rule: str, line: int, severity: Severity
) -> None:
    repo.base({"README.md": "demo\n"}).change({path: text})
    report = repo.check([AGENT])
    (result,) = report.results
    assert result.status is AgentStatus.OK
    assert found(result) == [(rule, line, severity)]
    (f,) = result.findings
    assert (f.path, f.cwe, f.is_security) == (path, "CWE-798", True)
    assert set(f.properties) == {"masked", "sha256", "kind"}
    assert len(f.properties["sha256"]) == 16 and f.properties["sha256"] in f.message
    assert f.properties["masked"] in f.message
    assert report.decision.action is Action.BLOCK_SECURITY


def test_hash_and_fingerprint_come_from_the_value_not_the_line(tmp_path: Path) -> None:
    prints = set()
    for i, prefix in enumerate(["", "# settings\n\n\n"]):
        repo = RepoBuilder(tmp_path / str(i))
        repo.base({"a.txt": "x\n"}).change({"app.py": f'{prefix}TOKEN = "{GH}"\n'})
        (f,) = run(repo).findings
        digest = hashlib.sha256(GH.encode()).hexdigest()
        assert f.properties["sha256"] == digest[:16]
        assert f.fingerprint == make_fingerprint(AGENT, "github-token", "app.py", digest)
        prints.add(f.fingerprint)
    assert len(prints) == 1


@pytest.mark.parametrize(
    "line",
    [
        'password = "changeme"',
        'api_key = "<your-key>"',
        'token = "${API_TOKEN}"',
        'secret = os.environ["SECRET"]',
        'password = os.getenv("DB_PASSWORD")',
        'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"',
        'OPENAI_API_KEY = "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"',
        'OPENAI_API_KEY = "sk-your-openai-api-key-goes-here"',
        'DATABASE_URL = "postgresql://app:${DB_PASSWORD}@db:5432/app"',
        'TEST_DB = "postgresql://postgres:postgres@localhost:5432/test"',
        'SQLITE = "sqlite:///data/app.db"',
        'if pem.startswith("-----BEGIN RSA PRIVATE KEY-----"):',
        'api_key: "{{ vault_api_key }}"',
        "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
        'password = "********"',
        'menu = "sk-navigation-menu-wrapper-item"',
        "token = get_token(settings.TOKEN_NAME)",
        'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"',
    ],
)
def test_placeholders_and_lookalikes_are_not_secrets(repo: RepoBuilder, line: str) -> None:
    repo.base({"README.md": "demo\n"}).change({"conf.py": f"import os\n{line}\n"})
    result = run(repo)
    assert result.findings == ()


def test_secret_on_an_unchanged_line_of_a_changed_file_is_not_reported(repo: RepoBuilder) -> None:
    repo.base({"settings.py": f'TOKEN = "{GH}"\nDEBUG = True\n'})
    repo.change({"settings.py": f'TOKEN = "{GH}"\nDEBUG = False\nSLACK = "{SLACK}"\n'})
    assert found(run(repo)) == [("slack-token", 3, Severity.HIGH)]


def test_rotating_a_key_body_under_an_unchanged_marker_is_found(repo: RepoBuilder) -> None:
    repo.base({"deploy.pem": PEM})
    repo.change({"deploy.pem": PEM.replace(KEY_BODY[2], KEY_BODY[2][::-1])})
    assert found(run(repo)) == [("private-key", 1, Severity.CRITICAL)]


def test_values_allowlisted_by_hash_in_the_base_policy_are_not_reported(repo: RepoBuilder) -> None:
    digest = hashlib.sha256(GH.encode()).hexdigest()
    repo.base({".mergegate.yml": f"agents:\n  secrets:\n    allow: ['{digest[:16]}']\n"})
    repo.change({"app.py": f'TOKEN = "{GH}"\nOTHER = "{GL}"\n'})
    result = run(repo)
    assert found(result) == [("gitlab-token", 2, Severity.HIGH)]
    assert "1 value(s) allowlisted by hash in the base policy" in result.notes


def test_allowlist_added_by_the_change_itself_is_ignored(repo: RepoBuilder) -> None:
    digest = hashlib.sha256(GH.encode()).hexdigest()
    repo.base({"README.md": "demo\n"})
    repo.change(
        {
            ".mergegate.yml": f"agents:\n  secrets:\n    allow: ['{digest}']\n",
            "app.py": f'TOKEN = "{GH}"\n',
        }
    )
    assert found(run(repo)) == [("github-token", 1, Severity.HIGH)]


PRAGMA_CHANGE = {
    "app.py": f'TOKEN = "{GH}"  # pragma: allowlist secret\n'
    "# pragma: allowlist nextline secret\n"
    f'KEY = "{OPENAI}"\n'
    f'GL = "{GL}"\n'
}


def test_an_inline_pragma_added_by_the_change_hides_nothing_by_default(repo: RepoBuilder) -> None:
    repo.base({"README.md": "demo\n"})
    repo.change(PRAGMA_CHANGE)
    assert [(rule, line) for rule, line, _ in found(run(repo))] == [
        ("github-token", 1),
        ("openai-api-key", 3),
        ("gitlab-token", 4),
    ]


def test_the_base_policy_can_opt_in_to_inline_pragmas_and_each_use_is_listed(repo: RepoBuilder) -> None:
    repo.base({".mergegate.yml": "agents:\n  secrets:\n    inline_allowlist: true\n"})
    repo.change(PRAGMA_CHANGE)
    result = run(repo)
    assert found(result) == [("gitlab-token", 4, Severity.HIGH)]
    assert "allowlisted inline by 'pragma: allowlist secret' in this change: app.py:1, app.py:3" in result.notes


def test_allow_entries_must_be_hashes_and_errors_do_not_quote_them() -> None:
    with pytest.raises(PolicyError) as err:
        load_policy_text(f"agents:\n  secrets:\n    allow: ['{GH}']\n", "test")
    assert "agents.secrets.allow" in str(err.value)
    assert GH not in str(err.value)


def test_no_added_text_lines_skips(repo: RepoBuilder) -> None:
    repo.base({"old.txt": "bye\n", "keep.txt": "x\n"}).change({"old.txt": None})
    result = run(repo)
    assert result.status is AgentStatus.SKIPPED
    assert result.detail == "no added lines in text files"


@pytest.mark.parametrize("length", [1, 4, 7, 10, 20, 26, 40, 74, 200])
def test_mask_shows_at_most_four_leading_chars_and_a_fifth_of_the_value(length: int) -> None:
    value = "".join(chr(ord("A") + i % 26) for i in range(length))
    masked = mask(value)
    shown = masked.split(" (")[0].replace("…", "")
    assert len(shown) <= min(6, length // 5)
    assert value[:5] not in masked
    assert masked.endswith(f"({length} chars)")


# --- nothing may leak ---------------------------------------------------------------------

LEAKY_FILES = {
    "app/settings.py": (
        f'AWS_ACCESS_KEY_ID = "{AWS_ID}"\n'
        f'AWS_SECRET_ACCESS_KEY = "{AWS_SECRET}"\n'
        f'GITHUB_TOKEN = "{GH}"\n'
        f'password = "{PASSWORD}"\n'  # also bandit's B105, whose message quotes values
        f'STRIPE = "{STRIPE}"\n'
    ),
    "deploy/.env": (
        f"GH_PAT={GH_PAT}\nGITLAB={GL}\nSLACK={SLACK}\nOPENAI={OPENAI}\nANTHROPIC={ANTHROPIC}\n"
        f"DATABASE_URL=postgresql://svc:{DB_PASSWORD}@db/app\nJWT={JWT}\n"
    ),
    "deploy/key.pem": PEM,
}


@pytest.fixture(scope="module")
def leaky_check(tmp_path_factory: pytest.TempPathFactory):
    repo = RepoBuilder(tmp_path_factory.mktemp("leak"))
    repo.base({"README.md": "demo\n"}).change(LEAKY_FILES)
    audit = AuditLog(repo.path / "audit.jsonl")
    report = repo.check(["secrets", "security-scan"], audit=audit)
    return report, audit.path.read_text(encoding="utf-8")


def _leaks(text: str) -> list[str]:
    """Secret values, or any 8-character piece of one, found in ``text``."""
    values = [*ALL_SECRETS, "".join(KEY_BODY)]
    return [v[:12] + "…" for v in values for i in range(len(v) - 7) if v[i : i + 8] in text]


def test_leak_check_found_every_secret(leaky_check) -> None:
    report, _ = leaky_check
    (secrets_result,) = [r for r in report.results if r.name == "secrets"]
    assert {f.rule for f in secrets_result.findings} == {
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "secret-keyword",
        "stripe-access-key",
        "gitlab-token",
        "slack-token",
        "openai-api-key",
        "anthropic-api-key",
        "database-url-password",
        "jwt",
        "private-key",
    }
    assert report.decision.action is Action.BLOCK_SECURITY


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_format_leaks_a_secret(leaky_check, fmt: str) -> None:
    report, _ = leaky_check
    output = renderer(fmt)(report)
    assert "github-token" in output  # the findings are there, only their values are not
    assert _leaks(output) == []
    assert _leaks(f"prefix {GH[3:12]} suffix")  # and the probe would see a leak


def test_audit_log_does_not_leak_a_secret(leaky_check) -> None:
    _, audit_text = leaky_check
    assert "secrets" in audit_text
    assert _leaks(audit_text) == []
