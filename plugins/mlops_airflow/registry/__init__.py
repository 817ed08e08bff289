"""The model registry without Airflow operators: version checks (``versions``), the promotion ledger and its one
reader (``ledger``), the promotion lock (``lock``), promotion tags on versions (``tags``) and alias moves
(``aliases``). The operators (``operators/promotion.py``, ``operators/registry.py``) and the UI read and write
through these modules; nothing here imports an operator."""
