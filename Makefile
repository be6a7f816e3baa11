# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
# The aedes broker of the broker compatibility tests (tests/compat/).
AEDES := tests/brokers_foreign/aedes
AEDES_STAMP := $(AEDES)/node_modules/.installed

.PHONY: install foreign-brokers run test lint typecheck format lock vendor clean

# Idempotent: re-installs only when a lock file changes.
install: $(STAMP) foreign-brokers

# Without npm the aedes tests skip and say why (CI, which requires every service,
# installs npm first).
foreign-brokers:
	@if command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(AEDES_STAMP); \
	else \
		echo "npm not found: the aedes compatibility tests will be skipped"; \
	fi

$(AEDES_STAMP): $(AEDES)/package-lock.json
	cd $(AEDES) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	mkdir -p var
	touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py serve --host 127.0.0.1 --port 8000

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with the Django and DRF plugins; settings in pyproject.toml ([tool.mypy]).
typecheck: install
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate requirements.lock from pyproject.toml.
lock: install
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var/*.sqlite3* $(AEDES)/node_modules
