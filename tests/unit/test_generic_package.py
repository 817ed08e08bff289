"""The package is generic: no bundled example's names anywhere in ``plugins/mlops_airflow`` (issue #14).

The examples (the churn classifier, the diabetes regressor) live in ``dags/`` and ``include/``; a team's own
model, data, feature repository and suite must work without editing the package, so no default, docstring or
fallback may name an example's model, column or feature service.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "mlops_airflow"

# Names of the bundled examples: models, entities, labels, feature services, suites and their feature columns.
EXAMPLE_NAMES = (
    "churn", "customer", "diabetes", "patient", "tenure_months", "monthly_charges", "support_calls",
    "usage_hours", "payment_delay_days", r"\bbmi\b", r"\bs5\b",
)
PATTERN = re.compile("|".join(EXAMPLE_NAMES), re.IGNORECASE)


def test_no_bundled_example_name_in_the_package() -> None:
    hits = []
    for path in sorted(PACKAGE.rglob("*")):
        if not path.is_file() or path.suffix not in {".py", ".html", ".js", ".css", ".json", ".yaml", ".md", ".txt"}:
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}")
    assert not hits, "example names in the generic package (move them to dags/ or include/):\n" + "\n".join(hits)
