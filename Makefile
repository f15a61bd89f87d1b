# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: venv demo test test-fast dev validate bench clean clean-data browser-deps

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	mkdir -p $(DAGSTER_HOME)
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m assets.demo

test: venv $(DAGSTER_HOME)/dagster.yaml
	$(VPY) -m pytest -q

dev: venv $(DAGSTER_HOME)/dagster.yaml
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
