# Two commands for a fresh machine:
#   make run    set up, then evaluate the bundled model on the task suite and print the table
#   make test   set up, then run the test suite (end-to-end tests included)
VENV ?= .venv
PY := $(VENV)/bin/python
# Building llama.cpp without its tests and examples halves the build (about 8 minutes on 2 cores).
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

.PHONY: setup run test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,test]'
	touch $@

run: setup
	$(VENV)/bin/harness run

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
