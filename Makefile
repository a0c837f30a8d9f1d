# Two commands a newcomer needs: `make demo` (the whole pipeline on generated data) and
# `make test`. Both create the virtual environment themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test demo report cards base mutation conformance gpu-check clean

install: $(STAMP)

# torch first, from the local CPU wheel; everything after is constrained to that torch so that no
# dependency can pull the CUDA build. The CLIP vocabulary ships inside the package (nothing else to fetch).
$(STAMP): setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	HF_HOME=$$(mktemp -d) $(BIN)/python -m pytest -q -o 'python_files=test_*.py conformance_*.py'

# The whole pipeline on the embedded synthetic data: generate it, train the clip_reid baseline
# with `accelerate launch` on the CPU, evaluate on the synthetic test split, print the table, leave
# a loadable model in $(DEMO_OUT), then serve the demo Space over it on http://127.0.0.1:7860 until
# Ctrl-C. The zoo's protocol config, trained for DEMO_EPOCHS epochs instead of the report's 3, on two
# threads: test R@1 45.50 in 3.6 minutes of training on the idle 2-core machine (README).
DEMO_OUT ?= out/demo-clip_reid
DEMO_EPOCHS ?= 10
demo: $(STAMP)
	HF_HOME=$${HF_HOME:-$$(mktemp -d)} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/accelerate launch --quiet \
	    --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
	    train.py --config configs/clip_reid_synthetic.yaml --num_train_epochs $(DEMO_EPOCHS) \
	    --output_dir $(DEMO_OUT) --overwrite_output_dir
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/python spaces/tireid-demo/app.py --model $(DEMO_OUT) \
	    --cache-dir $(DEMO_OUT)/gallery-cache --host 127.0.0.1 --port 7860

# The model zoo report: every method trained on the synthetic data (2 seeds, then the ablations) into
# benchmarks/runs/ (runs already there are reused), the training- and inference-cost benchmarks and
# the figures; rewrites benchmarks/RESULTS.md's report block, README.md's zoo table and
# benchmarks/figures/. Run it on an otherwise idle machine: it times the CPU.
report: $(STAMP)
	HF_HOME=$${HF_HOME:-$$(mktemp -d)} $(BIN)/python benchmarks/report.py

# The small pretrained CLIP base every configs/*_synthetic.yaml starts from (bases/clip-synthetic, committed):
# a transformers CLIPModel pretrained contrastively on 20,000 generated alt-text scenes, one CPU thread,
# bit-identical on the same CPU type and torch version. About 30 minutes on a 2-core machine (24 epochs).
base: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/tireid pretrain-base --out bases/clip-synthetic --overwrite

# The model card of every checkpoint the zoo publishes (hub_cards/), from the package's templates and
# method sections, the method configs' reported figures (zoo_reported) and configs/. Run it after
# changing any of them; a test checks it was.
cards: $(STAMP)
	$(BIN)/tireid cards --out hub_cards

# Mutation testing of the core (TESTING.md): mutmut makes mutants of the modules in pyproject.toml's
# [tool.mutmut] and runs, for each, the selected tests that call the mutated function; then the score
# per module. At the lowest CPU priority, MUTATION_JOBS at a time. Not part of `make test`. Results are
# cached in mutants/ (git-ignored): a second run only re-runs what changed. MUTANTS narrows the run,
# e.g. make mutation MUTANTS='"tireid_hf.data.samplers.*"'.
MUTATION_JOBS ?= 2
# The loss paths of UIT, LGUR and CADA: compute_losses, encode_batch and what they call (not the
# constructors, unpatchify/restore_image, nor CADA's re-ranking).
UIT_LOSS_PATH := $(foreach f,x_sincos_position_table x_patchify *forward *position_table *encode_batch *compute_losses \
	*grey_pixels *sample_kept_patches *dropped_patches *_restore_,"tireid_hf.modeling.modeling_uit.$(f)*")
LGUR_LOSS_PATH := $(foreach f,*forward *_to_head_width *_tokens *_foreground_weighted *retrieval_features *encode_batch \
	*compute_losses *ranking_loss *prototype_identity_loss,"tireid_hf.modeling.modeling_lgur.$(f)*")
CADA_LOSS_PATH := $(foreach f,x_ *decode *matching_losses *attribute_loss *encode_batch *compute_losses,\
	"tireid_hf.modeling.modeling_cada.$(f)*")
# The resume path of training/loop.py: where a run starts, which stages it starts or resumes, the stage's
# budget and periodic events, restoring the state; and of training/output_folder.py: the checks, journal and final move.
LOOP_RESUME_PATH := $(foreach f,_EpochBatches _EpochKeys _stage_loader _resume_point _stage_plan _stage_budget _due _epoch_complete \
	_restore_state,"tireid_hf.training.loop.*$(f)*") $(foreach f,check_output_dir complete_final_move start_over \
	remove_interrupted_saves best_model_folder finished_results,"tireid_hf.training.output_folder.x_$(f)__*")
MUTANTS ?= "tireid_hf.metrics.*" "tireid_hf.data.samplers.*" "tireid_hf.data.readers.*" "tireid_hf.modeling.losses.*" \
	"tireid_hf.modeling.base.*TIReIDPreTrainedModel*forward*" "tireid_hf.modeling.base.*encode_batch*" \
	"tireid_hf.modeling.base.*embed_pair*" "tireid_hf.modeling.base.*alignment_losses*" \
	"tireid_hf.modeling.base.*combine_losses*" "tireid_hf.modeling.base.*build_id_classifier*" \
	"tireid_hf.modeling.base.*identity_loss*" "tireid_hf.modeling.base.*wants_loss*" \
	"tireid_hf.modeling.configuration_tireid.*loss_weight*" \
	"tireid_hf.modeling.modeling_clip_reid.*" "tireid_hf.modeling.modeling_lcr2s.*" \
	$(UIT_LOSS_PATH) $(LGUR_LOSS_PATH) $(CADA_LOSS_PATH) \
	$(LOOP_RESUME_PATH) "tireid_hf.training.checkpoints.*"
mutation: $(STAMP)
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/python .ci/mutation_score

# transformers' own ModelTesterMixin (from the sdist of the installed transformers, fetched once with pip into
# .cache/, git-ignored) over every registered method, with CLIPModelTest's flags and skips (TESTING.md). Alone:
# `make test` runs it too (about 70 s for the five methods at one thread).
conformance: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -p no:cacheprovider tests/conformance_transformers.py

# The GPU check (benchmarks/gpu_check.py): every method's training step at ViT-B/16 in bf16 and fp32, eager
# and compiled, against IRRA's own step; 50 bf16 `accelerate launch` training steps per method, reloaded
# with AutoModel; out/gpu-check/gpu_check.{json,md}. At most 8 minutes on one H100; offline.
gpu-check: $(STAMP)
	benchmarks/gpu_check.sh --out out/gpu-check

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache mutants
