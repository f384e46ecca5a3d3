# Quick start: `make run` (embedded, no broker) and `make test` (everything, with a real Kafka broker).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench install kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/certify run

# Starts the broker, runs every test (Kafka-marked ones included), always stops the broker.
test: $(STAMP)
	@scripts/ensure-chromium.sh
	@scripts/kafka.sh start
	@status=0; CERTIFY_KAFKA_BOOTSTRAP=$$(cat .cache/kafka/bootstrap) $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	  scripts/kafka.sh stop; exit $$status

bench: $(STAMP)
	@scripts/kafka.sh start
	@status=0; CERTIFY_KAFKA_BOOTSTRAP=$$(cat .cache/kafka/bootstrap) $(BIN)/python -m bench $(BENCH) || status=$$?; \
	  scripts/kafka.sh stop; exit $$status

kafka-start:
	scripts/kafka.sh start

kafka-stop:
	scripts/kafka.sh stop

clean:
	rm -rf $(VENV) data .pytest_cache
