"""The shared-results site (`workbench site`): every run found under results folders on one static index, a page
per case with its history, comparisons of two runs, and the headline numbers for trend tools.

- `runs.py`: finding run folders (correctness, audit, calibration, lane, controls, sweep) and what the site shows
  of each (`SiteRun`);
- `history.py`: a case's history charts (inline SVG, matplotlib);
- `compare.py`: two runs side by side, the questions whose correctness differs, the paired test;
- `build.py`: writing the site (index.html, cases/, compare/, runs/ with each run's report copied);
- `benchmark.py`: `--benchmark-json` (github-action-benchmark's custom format);
- `cli.py`: `workbench site RESULTS_DIR... --out SITE_DIR`, `workbench site --compare RUN_A RUN_B --out DIR`.

Pages are Jinja2 templates with autoescape (`workbench/templates/pages/`), self-contained: inline CSS and
JavaScript, charts as data URIs; nothing is loaded from the network.
"""
