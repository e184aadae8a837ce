# The README's two commands, and a few helpers.
.PHONY: serve test model fmt lint openapi console

serve: ## run aitier on the embedded default model
	scripts/serve.sh

test: ## run the whole test suite
	scripts/test.sh

model: ## fetch the default models into models/
	scripts/fetch-model.sh
	scripts/fetch-model.sh minilm

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

openapi: ## write docs/openapi.json from the code
	cargo run --quiet -p aitier-server -- openapi > docs/openapi.json

console: ## rebuild the web console's bundle (commit console/dist after)
	scripts/build-console.sh
