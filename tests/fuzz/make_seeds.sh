#!/usr/bin/env bash
# Make the committed seed corpora of tests/fuzz/corpus/ (run from the source
# root after a build; the seeds are committed, this is how they were made):
#   bash tests/fuzz/make_seeds.sh build/examples/char-lm
# char_lm_ckpt: real checkpoints of tiny runs on char_lm_text.txt (resumable,
# finished, --tbptt, other cells, dtypes and optimizers, another text);
# safetensors: a few of those plus make_seeds.py's edge cases; rnn_load:
# make_seeds.py's files.
set -eu
LM="$1"
here=tests/fuzz
out=$here/corpus
text=$here/char_lm_text.txt
mkdir -p "$out/char_lm_ckpt" "$out/safetensors" "$out/rnn_load"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=(--data "$text" --hidden 4 --embed 2 --seq 8 --batch 2 --length 0 --eval-chars 0)
"$LM" train "${tiny[@]}" --steps 4 --stop-after 2 --save "$out/char_lm_ckpt/lstm_half.safetensors" >/dev/null
"$LM" train "${tiny[@]}" --steps 2 --save "$out/char_lm_ckpt/lstm_done.safetensors" >/dev/null
"$LM" train "${tiny[@]}" --cell gru --tbptt --steps 4 --stop-after 2 \
  --save "$out/char_lm_ckpt/gru_tbptt.safetensors" >/dev/null
"$LM" train "${tiny[@]}" --cell mgu --layers 2 --optimizer sgd --dropout 0.1 --steps 4 \
  --stop-after 1 --save "$out/char_lm_ckpt/mgu_sgd.safetensors" >/dev/null
"$LM" train "${tiny[@]}" --cell rnn --dtype f64 --optimizer rmsprop --schedule warmup:1+cosine \
  --steps 4 --stop-after 2 --save "$out/char_lm_ckpt/rnn_f64.safetensors" >/dev/null
head -c 1500 examples/data/tinyshakespeare.txt | tr "A-Z" "a-z" | tr -cd "a-z \n" >"$tmp/other.txt"
"$LM" train "${tiny[@]}" --data "$tmp/other.txt" --steps 2 \
  --save "$out/char_lm_ckpt/other_text.safetensors" >/dev/null
cp "$out/char_lm_ckpt/gru_tbptt.safetensors" "$out/char_lm_ckpt/rnn_f64.safetensors" "$out/safetensors/"
python3 "$here/make_seeds.py" "$out"
ls -l "$out"/*
