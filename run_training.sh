#!/usr/bin/env bash
# nsnn training recipes.
#
#   bash run_training.sh              CPU demo (~3.5 min on 2 cores): NILIF conv SNN (mnist_convnet, T=4) on the
#                                     embedded MNIST 8k/2k split; trains, tests in every eval mode, plots.
#   bash run_training.sh [RECIPE] [extra flags passed to the script; flags alone go to mnist]
#
# Recipes (full-length; a GPU is strongly advised; CIFAR/DVS data under ./data or --data-dir, CIFAR can
# be fetched with --download):
#   mnist         the CPU demo above
#   cifar10       NSNN's published command: spiking ResNet-18, NILIF σ=0.3, T=2, Adam 3e-3, batch 256, 300 epochs
#   cifar10-lif   the same with the deterministic LIF neuron (the DSNN baseline)
#   cifar100      the CIFAR-10 recipe on CIFAR-100
#   dvs           NSNN's DVS-CIFAR10 command: VGG-SNN, NILIF σ=0.2, T=10, Adam 3e-4, batch 32, 210 epochs
#   cifarnet      CIFARNet (no BN), NILIF σ=0.3, T=4, Adam 1e-3, batch 128, 300 epochs, cutout 8 (nsnn's recipe)
#
# Multi-GPU: prefix the python call with torchrun, e.g.
#   torchrun --nproc_per_node 4 scripts/main_cifar10.py --minibatch 64 ...
set -euo pipefail
# No cd: relative --out/--resume/--data-dir and the default runs/ folder are the caller's, as with the
# scripts themselves.
scripts="$(cd "$(dirname "$0")" && pwd)/scripts"
PYTHON="${PYTHON:-python}"

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
}

# The first argument names the recipe, unless it is a flag (other than -h/--help): then the default
# recipe, mnist, gets every argument.
recipe=mnist
if [ "$#" -gt 0 ]; then
    case "$1" in
        -h | --help) recipe="$1" && shift ;;
        -*) ;;
        *) recipe="$1" && shift ;;
    esac
fi

# A resumed run (--resume RUN) keeps its own configuration: the recipe's flags are left out, since the
# script refuses any flag that differs from the run's (a run trained with --timestep 2 must not be
# resumed with the recipe's --timestep 4).
resuming=false
for arg in "$@"; do
    case "$arg" in --resume | --resume=*) resuming=true ;; esac
done
# The recipe's flags, in the array flags: the ones given, or none when resuming. bash 3.2 (macOS's
# /bin/bash) runs this script: no bash-4 builtin (mapfile), and an array that may be empty is expanded as
# ${a[@]+"${a[@]}"} (before bash 4.4, set -u took "${a[@]}" of an empty array for an unbound variable).
recipe_flags() {
    flags=()
    if ! $resuming; then flags=("$@"); fi
}

case "$recipe" in
    mnist)
        # A new run folder, unless the extra flags name one (--out DIR) or continue one (--resume RUN).
        run_dir="runs/mnist-nilif-$(date +%Y%m%d-%H%M%S)"
        out_flag=(--out "$run_dir")
        args=("$@")
        for ((i = 0; i < ${#args[@]}; i++)); do
            case "${args[i]}" in
                --out | --resume) run_dir="${args[i + 1]:-}" && out_flag=() ;;
                --out=* | --resume=*) run_dir="${args[i]#*=}" && out_flag=() ;;
            esac
        done
        case "$run_dir" in *.pt) run_dir="$(dirname "$run_dir")" ;; esac  # --resume runs/X/last.pt
        for arg in "$@"; do  # the script's help, and nothing trained or tested
            case "$arg" in -h | --help) exec "$PYTHON" "$scripts"/main_mnist.py --help ;; esac
        done
        recipe_flags --neuron NILIF --model mnist_convnet --timestep 4
        # what runs, as given: the extra flags come last and override the recipe's
        if $resuming; then
            echo "[nsnn] resuming $run_dir (the run's own configuration; flags: $*)"
        else
            echo "[nsnn] training (mnist recipe, flags: ${flags[*]}${*:+ $*}) -> $run_dir"
        fi
        "$PYTHON" "$scripts"/main_mnist.py ${flags[@]+"${flags[@]}"} ${out_flag[@]+"${out_flag[@]}"} "$@"
        echo "[nsnn] testing $run_dir/best.pt in each evaluation mode"
        "$PYTHON" "$scripts"/testing_mnist.py --snapshot "$run_dir/best.pt" --eval-mode all --n_ensembles 8
        echo "[nsnn] done. Results in $run_dir:"
        echo "  metrics.csv, curves.png (training curves), summary.json (test accuracy), best.pt / last.pt,"
        echo "  evaluations.csv + evaluations.png + eval-*.json (test accuracy per evaluation mode), tensorboard/"
        ;;
    cifar10 | cifar10-lif | cifar100)
        neuron=NILIF
        [ "$recipe" = cifar10-lif ] && neuron=LIF
        script="$scripts"/main_cifar10.py
        [ "$recipe" = cifar100 ] && script="$scripts"/main_cifar100.py
        recipe_flags --neuron "$neuron" --reg no --model spiking_resnet18 --epochs 300 \
            --minibatch 256 --timestep 2 --seed 1 --lr 0.003 --sigma 0.3
        "$PYTHON" "$script" ${flags[@]+"${flags[@]}"} "$@"
        ;;
    dvs)
        recipe_flags --neuron NILIF --reg no --model vggsnn --epochs 210 --minibatch 32 \
            --timestep 10 --seed 1 --lr 0.0003 --sigma 0.2
        "$PYTHON" "$scripts"/main_dvs_cifar10.py ${flags[@]+"${flags[@]}"} "$@"
        ;;
    cifarnet)
        recipe_flags --neuron NILIF --reg no --model cifarnet --epochs 300 --minibatch 128 \
            --timestep 4 --seed 1 --lr 0.001 --sigma 0.3 --cutout 8
        "$PYTHON" "$scripts"/main_cifar10.py ${flags[@]+"${flags[@]}"} "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        echo "run_training.sh: unknown recipe '$recipe'" >&2
        usage >&2
        exit 2
        ;;
esac
