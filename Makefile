# Two commands do all set-up: `make run` starts the app, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.browser

.PHONY: run test lint format bench clean lock

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

# Re-pin constraints.txt: the newest versions requirements*.txt allow, resolved in a fresh
# venv (so nothing stale is pinned); then `make test` and commit the new constraints.txt.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -r requirements-dev.txt
	head -n 3 constraints.txt > constraints.txt.new
	$(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -viE '^resnet[-_]explorer' >> constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf $(LOCK_VENV)

run: $(STAMP)
	$(BIN)/streamlit run app.py

# The browser tests need a Chromium: scripts/install_browser.sh finds or installs one once.
$(BROWSER): $(STAMP) scripts/install_browser.sh
	sh scripts/install_browser.sh $(BIN)
	touch $(BROWSER)

test: $(STAMP) $(BROWSER)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/interactive.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/cpu_profile.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
