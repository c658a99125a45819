"""Reports of results folders: the self-contained HTML report (``html.py``), the Markdown results page
(``results_page.py``) and the cross-run reading both share (``findings.py``)."""
