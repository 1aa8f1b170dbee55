"""``data/`` holds fixtures and the script that made them with an older release's code: not
test modules (collecting it would import that script under the current code)."""

collect_ignore = ["data"]
