#!/usr/bin/env bash
# The local sweep executor's cost: 12 tiny runs (3 latent sizes x 2 widths x 2 seeds, 2 epochs
# each on a 32x32 synthetic NORB) trained one by one with `norbvae train` against
# `norbvae sweep --jobs 1` (overhead per run) and `--jobs 2` (parallel speed-up).
#   bench/sweep_local.sh [path/to/norbvae]    (default target/release/norbvae)
set -euo pipefail
EXE="$(realpath "${1:-target/release/norbvae}")"
WORK="$(mktemp -d /tmp/norbvae-sweep-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# The tests' small set: 32x32, 3 elevations x 6 azimuths x 2 lightings (900 pairs per half).
"$EXE" synth --out norb --size 32 --seed 5 --elevations 0,4,8 --azimuths 0,6,12,18,24,30 --lightings 0,3 >/dev/null 2>&1
cat >base.toml <<'TOML'
seed = 0
[data]
image_size = 32
limit = 96
[model]
kind = "conv"
latent_dim = 4
[model.conv]
downsizings = 3
first_filters = 4
max_filters = 16
intermediate = 16
[likelihood]
kind = "gaussian_optimal"
output_activation = "sigmoid"
[train]
batch_size = 16
max_epochs = 2
grid_images = 4
TOML
cores=$(nproc)
now() { date +%s.%N; }
t0=$(now)
for ld in 2 4 6; do for ff in 2 4; do for s in 0 1; do
    RAYON_NUM_THREADS=$cores "$EXE" train --config base.toml --data norb:norb --out "one/$ld-$ff-$s" \
        --set model.latent_dim=$ld --set model.conv.first_filters=$ff --set seed=$s >/dev/null 2>&1
done; done; done
t1=$(now)
grid=(--config base.toml --data norb:norb --grid model.latent_dim=2,4,6 --grid model.conv.first_filters=2,4 --seeds 0,1)
"$EXE" sweep "${grid[@]}" --out j1 --jobs 1 >/dev/null 2>&1
t2=$(now)
"$EXE" sweep "${grid[@]}" --out j2 --jobs 2 >/dev/null 2>&1
t3=$(now)
cpu="$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1)"
python3 - "$t0" "$t1" "$t2" "$t3" "$cpu" "$cores" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:5])
cpu, cores, load = sys.argv[5], sys.argv[6], sys.argv[7]
one, j1, j2 = t1 - t0, t2 - t1, t3 - t2
print(f"CPU: {cpu}, {cores} cores, load average at the end {load}")
print(f"12 runs one by one (norbvae train):  {one:7.1f} s")
print(f"sweep --jobs 1:                       {j1:7.1f} s   overhead per run {(j1 - one) / 12:+.2f} s")
print(f"sweep --jobs 2:                       {j2:7.1f} s   {j1 / j2:.2f}x the --jobs 1 speed")
PY
