"""The one rule a secret's value must pass: not empty, not an example, long enough, not guessable.

Every secret check applies it: the environment's secrets and REDIS_URL's password
(shared/ops/secret_check.py), the compose secret files and the values `make-secrets` draws
(shared/ops/secret_files.py), the web token (services/web/security.py). It knows no variable,
file or command, so both checkers build on it and neither on the other. Each problem is one line
that names the secret and never shows its value.
"""

from __future__ import annotations

import re

MIN_LENGTH = 12
# The web token is the one secret a browser offers to whoever reaches the page's port, and it is
# set once by hand: 16 at least. The passwords keep 12, so a deployment's existing ones still pass.
MIN_LENGTH_BY_NAME = {"WEB_TOKEN": 16}
# Values that appear in examples, tutorials and image defaults: anyone can guess them.
PLACEHOLDERS = frozenset({
    "change-me", "changeme", "change_me", "change-this", "changethis", "replace-me", "replaceme",
    "password", "passw0rd", "password123", "secret", "s3cret", "admin", "administrator", "root",
    "redis", "grafana", "engagement", "example", "default", "test", "guest", "letmein",
    "123456", "12345678", "123456789", "1234567890", "qwerty", "xxx", "xxxxxxxx", "todo", "none", "null",
})
HOW_TO_SET = "set your own (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
# Words found in leaked-password lists and in this product's own names: a secret that is mostly
# these (after 0->o, 1->i, 3->e, 4->a, 5->s, 7->t, @->a, $->s) is guessed long before its length helps.
COMMON_WORDS = frozenset(PLACEHOLDERS | {
    "pass", "passwd", "letmein", "welcome", "login", "master", "monkey", "dragon", "iloveyou", "sunshine",
    "princess", "football", "baseball", "shadow", "superman", "trustno", "abc", "token", "teacher", "student",
    "school", "class", "jetson", "summer", "winter", "hello", "access", "secure", "private", "user",
})
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "azertyuiop", "1234567890")
_LEET = str.maketrans("013457@$", "oieaatas")
# Characters left once the common words, runs (abc, 321, aaa) and keyboard rows are taken out.
MIN_RANDOM_CHARACTERS = 8


def secret_problem(name: str, value: str | None, label: str | None = None, fix: str = HOW_TO_SET) -> str | None:
    """One line saying why `value` must not be used as the secret `name` (called `label` in the line,
    e.g. the file it came from); None when it is fine."""
    label = label or name
    if value is None or not value.strip():
        return f"{label} is empty: {fix}"
    if value.strip().lower() in PLACEHOLDERS or value.strip().lower().startswith("change-me"):
        return f"{label} is an example value anyone can guess: {fix}"
    minimum = MIN_LENGTH_BY_NAME.get(name, MIN_LENGTH)
    if len(value) < minimum:
        return f"{label} has {len(value)} characters, fewer than {minimum}: {fix}"
    if guessable(value):
        return f"{label} is a repeated, sequential or dictionary string anyone can guess: {fix}"
    return None


def guessable(value: str) -> bool:
    """A value that repeats one pattern, uses a handful of characters, or is mostly common words,
    runs (abcd, 4321, aaaa) and keyboard rows: what guessing tools try first, whatever its length."""
    text = value.lower()
    if len(set(text)) < 6 or re.fullmatch(r"(.+?)\1+", text, flags=re.DOTALL):
        return True
    covered = [False] * len(text)

    def cover(start: int, end: int) -> None:
        covered[start:end] = [True] * (end - start)

    plain = text.translate(_LEET)
    for word in COMMON_WORDS:
        if len(word) >= 3:
            for found in re.finditer(re.escape(word), plain):
                cover(found.start(), found.end())
    rows = [*KEYBOARD_ROWS, *(row[::-1] for row in KEYBOARD_ROWS)]
    for start in range(len(text) - 3):
        end = start + 4
        while end <= len(text) and any(text[start:end] in row for row in rows):
            end += 1
        if end > start + 4:
            cover(start, end - 1)
    start = 0
    while start < len(text) - 1:  # runs of one step between neighbours: abc, 4321, zzz
        step = ord(text[start + 1]) - ord(text[start])
        end = start + 1
        while end + 1 < len(text) and ord(text[end + 1]) - ord(text[end]) == step:
            end += 1
        if step in (-1, 0, 1) and end - start >= 2:
            cover(start, end + 1)
        start = end
    return covered.count(False) < MIN_RANDOM_CHARACTERS


