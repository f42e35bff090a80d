"""CODEOWNERS semantics, pinned to the examples and syntax exceptions in GitHub's
"About code owners" documentation, plus mergegate's fail-closed handling of bad lines.

Source: docs.github.com/en/repositories/managing-your-repositorys-settings-and-features/
customizing-your-repository/about-code-owners ("CODEOWNERS syntax", "Syntax exceptions",
"CODEOWNERS file location", "CODEOWNERS file size").
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mergegate.core.codeowners import (
    ADMINS,
    CODEOWNERS_LOCATIONS,
    MAX_CODEOWNERS_BYTES,
    Owner,
    OwnerKind,
    compile_pattern,
    directory_resolver,
    load_codeowners,
    parse_codeowners,
    parse_owner,
)
from mergegate.core.principals import Directory, Principal, PrincipalKind, Role

# GitHub's documented example file, nearly verbatim in structure.
GITHUB_EXAMPLE = """\
# This is a comment.
*       @global-owner1 @global-owner2
*.js    @js-owner #This is an inline comment.
*.go docs@example.com
*.txt @octo-org/octocats
/build/logs/ @doctocat
docs/* docs@example.com
apps/ @octocat
/docs/ @doctocat
/scripts/ @doctocat @octocat
**/logs @octocat
/apps/ @octocat
/apps/github
"""


def owners_of(text: str, path: str) -> list[str]:
    return [str(o) for o in parse_codeowners(text).ownership(path).owners]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("README.md", ["@global-owner1", "@global-owner2"]),  # * is the default owner
        ("src/app.js", ["@js-owner"]),  # *.js at any depth; the inline comment is ignored
        ("main.go", ["docs@example.com"]),
        ("notes/a.txt", ["@octo-org/octocats"]),
        ("build/logs/today.log", ["@octocat"]),  # /build/logs/ ... then **/logs wins (later)
        ("scripts/deploy.sh", ["@doctocat", "@octocat"]),
        ("deeply/nested/logs/x", ["@octocat"]),  # **/logs
        ("apps/main/index.py", ["@octocat"]),  # /apps/
        ("apps/github/index.py", []),  # /apps/github with no owners: unowned
        ("src/apps/x.py", ["@octocat"]),  # apps/ at any depth
    ],
)
def test_githubs_documented_example(path, expected):
    assert owners_of(GITHUB_EXAMPLE, path) == expected


def test_docs_star_matches_direct_children_only():
    # GitHub: "docs/* ... will match files like docs/getting-started.md but not further
    # nested files like docs/build-app/troubleshooting.md" (a departure from gitignore).
    text = "* @everyone\ndocs/* docs@example.com\n"
    assert owners_of(text, "docs/getting-started.md") == ["docs@example.com"]
    assert owners_of(text, "docs/build-app/troubleshooting.md") == ["@everyone"]


def test_last_matching_pattern_wins():
    text = "*.js @js-owner\n* @everyone\n"
    assert owners_of(text, "a.js") == ["@everyone"]
    text = "* @everyone\n*.js @js-owner\n"
    assert owners_of(text, "a.js") == ["@js-owner"]


def test_a_pattern_without_owners_unowns_and_is_not_no_match():
    co = parse_codeowners("/apps/ @octocat\n/apps/github\n")
    unowned = co.ownership("apps/github/x.js")
    assert not unowned.owned and unowned.rule is not None and unowned.rule.line == 2
    nothing = co.ownership("README.md")
    assert not nothing.owned and nothing.rule is None


def test_paths_are_case_sensitive():
    text = "/Docs/ @upper\n/docs/ @lower\n"
    assert owners_of(text, "Docs/a.md") == ["@upper"]
    assert owners_of(text, "docs/a.md") == ["@lower"]
    assert owners_of(text, "DOCS/a.md") == []


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*", "a/b/c.txt", True),
        ("*.js", "a.js", True),
        ("*.js", "deep/dir/a.js", True),
        ("*.js", "a.jsx", False),
        ("*.js", "lib.js/inner.txt", True),  # a directory named *.js owns its contents (gitignore)
        ("docs/*", "docs/a.md", True),
        ("docs/*", "docs/sub/a.md", False),
        ("docs/*", "src/docs/a.md", False),  # a middle slash anchors to the root
        ("/docs/", "docs/a/b.md", True),
        ("/docs/", "src/docs/a.md", False),
        ("/docs/", "docs", False),  # a trailing slash matches directories only
        ("apps/", "apps/x", True),
        ("apps/", "a/b/apps/x", True),
        ("apps/", "apps", False),
        ("**/logs", "logs/x", True),
        ("**/logs", "a/b/logs/x", True),
        ("**/logs", "a/b/logs", True),
        ("**/logs", "a/b/mylogs/x", False),
        ("/apps/github", "apps/github/x.js", True),  # a directory owns everything below it
        ("/apps/github", "apps/github", True),
        ("/apps/github", "apps/githubx", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**", "a/x/y", True),
        ("a/**", "b/a/x", False),
        ("src/auth", "src/auth/login.py", True),
        ("auth", "src/auth/login.py", True),  # no slash: a name at any depth
        ("?.py", "a.py", True),
        ("?.py", "ab.py", False),
        ("*.[ch]", "x.c", False),  # no character ranges: brackets match themselves
        ("*.[ch]", "x.[ch]", True),
        ("pages/[id].tsx", "pages/[id].tsx", True),
        ("file\\ name.txt", "file name.txt", True),
    ],
)
def test_pattern_matching(pattern, path, matches):
    co = parse_codeowners(f"{pattern} @owner\n")
    assert not co.problems, co.problems
    assert co.ownership(path).owned is matches


@given(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,4}", fullmatch=True))
def test_star_owns_every_path(path):
    assert compile_pattern("*").fullmatch(path)


@given(
    st.from_regex(r"[a-z]{1,5}", fullmatch=True),
    st.from_regex(r"[a-z]{1,5}(/[a-z]{1,5}){0,3}", fullmatch=True),
)
def test_anchored_directory_owns_exactly_its_subtree(directory, rest):
    regex = compile_pattern(f"/{directory}/")
    assert regex.fullmatch(f"{directory}/{rest}")
    assert not regex.fullmatch(f"x{directory}/{rest}")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("@alice", Owner(OwnerKind.NAME, "alice")),
        ("@security", Owner(OwnerKind.NAME, "security")),
        ("@octo-org/octocats", Owner(OwnerKind.TEAM, "octo-org/octocats")),
        ("docs@example.com", Owner(OwnerKind.EMAIL, "docs@example.com")),
        ("alice", None),
        ("@", None),
        ("@-alice", None),
        ("@a/b/c", None),
        ("@alice!", None),
        ("not-an-email@", None),
    ],
)
def test_owner_syntax(token, expected):
    assert parse_owner(token) == expected


# -- invalid lines fail closed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("src/ alice", "owner 'alice' is not @user"),
        ("!src/legacy/ @nobody", "'!' negation does not work"),
        ("\\#notes.md @alice", "escaping '#'"),
        ("src\\tfoo @alice", "unknown escape"),
        ("/ @alice", "can match nothing"),
        ("a//b @alice", "can match nothing"),
    ],
)
def test_invalid_lines_are_reported_with_their_line_number(line, problem):
    co = parse_codeowners(f"# owners\n* @everyone\n{line}\n", ".github/CODEOWNERS")
    assert len(co.problems) == 1
    assert co.problems[0].line == 3
    assert problem in co.problems[0].problem
    assert str(co.problems[0]).startswith(".github/CODEOWNERS line 3: ")


def test_an_invalid_owner_blocks_only_the_paths_its_pattern_covers():
    co = parse_codeowners("* @everyone\n/src/auth/ @security security-team\n")
    blocked = co.ownership("src/auth/login.py")
    assert not blocked.decided and blocked.problems[0].line == 2
    fine = co.ownership("README.md")
    assert fine.decided and fine.describe_owners() == "@everyone"


def test_an_invalid_line_overridden_by_a_later_valid_rule_decides_nothing():
    co = parse_codeowners("/src/auth/ @security bad-owner\n* @everyone\n")
    assert co.ownership("src/auth/login.py").decided
    assert co.ownership("src/auth/login.py").describe_owners() == "@everyone"


def test_a_leading_negation_covers_what_it_tried_to_unown():
    co = parse_codeowners("* @everyone\n!/vendor/\n")
    assert not co.ownership("vendor/lib.c").decided
    assert co.ownership("src/main.c").decided


def test_an_unparseable_pattern_covers_every_path():
    co = parse_codeowners("* @everyone\nsrc/!odd @x\n")
    assert not co.ownership("anything/at/all.py").decided


def test_an_unknown_owner_syntax_in_an_email_position_is_invalid():
    co = parse_codeowners("*.py @py bob@\n")
    assert co.problems and co.problems[0].line == 1


def test_a_file_too_large_blocks_everything():
    text = "# pad\n" * (MAX_CODEOWNERS_BYTES // 6 + 1)
    co = parse_codeowners(text)
    assert not co.ownership("README.md").decided
    assert "3 MB" in str(co.ownership("README.md").problems[0])


# -- which file, and always-owned paths ------------------------------------------------------


def test_the_first_existing_location_is_the_only_one_used():
    texts = {".github/CODEOWNERS": None, "CODEOWNERS": "* @root\n", "docs/CODEOWNERS": "* @docs\n"}
    co = load_codeowners(texts)
    assert co.source == "CODEOWNERS"
    assert co.ownership("x").describe_owners() == "@root"
    texts[".github/CODEOWNERS"] = "* @github\n"
    assert load_codeowners(texts).ownership("x").describe_owners() == "@github"


def test_an_empty_higher_priority_file_still_wins():
    co = load_codeowners({".github/CODEOWNERS": "", "CODEOWNERS": "* @root\n", "docs/CODEOWNERS": None})
    assert co.source == ".github/CODEOWNERS"
    assert not co.ownership("src/x.py").owned


def test_no_codeowners_anywhere_means_unowned_except_the_protected_files():
    co = load_codeowners(dict.fromkeys(CODEOWNERS_LOCATIONS))
    assert co.source is None
    assert not co.ownership("src/x.py").owned
    for path in (".mergegate.yml", ".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"):
        o = co.ownership(path)
        assert o.owners == (ADMINS,) and o.by_default


def test_a_location_not_read_blocks_every_path():
    co = load_codeowners({"CODEOWNERS": "* @root\n"})
    o = co.ownership("src/x.py")
    assert not o.decided and ".github/CODEOWNERS" in str(o.problems[0])


def test_protected_files_keep_their_rule_owners_and_fall_back_to_admins():
    co = parse_codeowners("* @everyone\n.mergegate.yml\n")
    assert co.ownership("CODEOWNERS").describe_owners() == "@everyone"
    policy = co.ownership(".mergegate.yml")
    assert policy.owners == (ADMINS,) and policy.by_default  # "unowned" is not allowed here


def test_editing_codeowners_in_the_change_is_irrelevant():
    """The gate is given the base's texts. What the change's copy says never matters:
    the only input is the base mapping, and the change's new CODEOWNERS is itself a
    path that must be approved by the base's owners."""
    base = {".github/CODEOWNERS": None, "CODEOWNERS": "/src/auth/ @security\n", "docs/CODEOWNERS": None}
    co = load_codeowners(base)
    # The change would rewrite CODEOWNERS to "* @coding-agent"; nothing here reads it.
    assert co.ownership("src/auth/login.py").describe_owners() == "@security"
    assert co.ownership("CODEOWNERS").owners == (ADMINS,)
    # Adding a higher-priority file in the change is likewise owned by the admins.
    assert co.ownership(".github/CODEOWNERS").owners == (ADMINS,)


# -- resolving owners to principals ----------------------------------------------------------


def test_directory_resolver():
    d = Directory(
        (
            Principal("alice", PrincipalKind.HUMAN, Role.ADMIN, "alice@example.com"),
            Principal("sam", PrincipalKind.HUMAN, groups=frozenset({"security", "octo-org/octocats"})),
            Principal("bot", PrincipalKind.AGENT, Role.ADMIN, groups=frozenset({"security"})),
        )
    )
    resolve = directory_resolver(d)
    assert resolve(Owner(OwnerKind.NAME, "alice")) == {"alice"}
    assert resolve(Owner(OwnerKind.NAME, "security")) == {"sam", "bot"}
    assert resolve(Owner(OwnerKind.TEAM, "octo-org/octocats")) == {"sam"}
    assert resolve(Owner(OwnerKind.EMAIL, "ALICE@example.com")) == {"alice"}
    assert resolve(ADMINS) == {"alice"}  # humans only: an admin agent is not an owner
    assert resolve(Owner(OwnerKind.NAME, "Alice")) is None
    assert resolve(Owner(OwnerKind.NAME, "ghost")) is None
    assert resolve(Owner(OwnerKind.EMAIL, "ghost@example.com")) is None


def test_crlf_line_endings_and_a_byte_order_mark_are_tolerated():
    co = parse_codeowners("\ufeff* @everyone\r\n/src/auth/ @security\r\n")
    assert not co.problems
    assert co.ownership("README.md").describe_owners() == "@everyone"
    assert co.ownership("src/auth/x.py").describe_owners() == "@security"
