#!/bin/bash
# Usage: [E=path/to/evobudget] [N=trials] [LO=0.3 HI=1.5 (kill delays as fractions of one export's time)] kill_trials.sh
# kill -9 `evobudget export` at random moments; classify OUT afterwards.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E=${E:-$ROOT/build/evobudget}
N=${N:-20}
W=$(mktemp -d -t killtr.XXXXXX)
cd $W
echo '{"model": "'$ROOT'/assets/demo", "units": [], "drop": [{"block": 1, "sub": "mlp"}]}' > new.json
echo '{"model": "'$ROOT'/assets/demo", "units": [], "drop": [{"block": 0, "sub": "attn"}]}' > old.json
$E export --config new.json --out ref_new > /dev/null 2>&1 || exit 1
$E export --config old.json --out ref_old > /dev/null 2>&1 || exit 1
sum() { (cd $1 2>/dev/null && md5sum $(ls | sort) 2>/dev/null | md5sum | cut -c1-32); }
RN=$(sum ref_new); RO=$(sum ref_old)
t0=$(date +%s.%N); $E export --config new.json --out timing > /dev/null 2>&1; t1=$(date +%s.%N)
dur=$(echo "$t1 - $t0" | bc)
echo "export takes ${dur}s"
absent=0; new=0; old=0; half=0; half_acc=0; stages=0; cleaned=0
for i in $(seq 1 $N); do
  mode=$((i % 2))   # 0: fresh OUT, 1: --force over an existing complete OUT
  rm -rf out out.*
  if [ $mode = 1 ]; then cp -r ref_old out; F=--force; else F=; fi
  delay=$(python3 -c "import random; print(round(random.uniform($dur * ${LO:-0}, $dur * ${HI:-1.1}), 3))")
  $E export --config new.json --out out $F > /dev/null 2>&1 &
  pid=$!
  sleep $delay
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  st=$(ls -d out.tmp.* 2>/dev/null | wc -l); stages=$((stages + st))
  if [ ! -e out ]; then c=absent; absent=$((absent+1))
  else
    s=$(sum out)
    if [ "$s" = "$RN" ]; then c=new; new=$((new+1))
    elif [ "$s" = "$RO" ]; then c=old; old=$((old+1))
    else c=HALF; half=$((half+1))
      if $E info --model out > /dev/null 2>&1; then half_acc=$((half_acc+1)); c="HALF-ACCEPTED"; fi
    fi
  fi
  # the next export cleans the dead stage
  if [ $st -gt 0 ]; then $E export --config new.json --out out --force > /dev/null 2>&1; left=$(ls -d out.tmp.* 2>/dev/null | wc -l); [ $left = 0 ] && cleaned=$((cleaned+st)); fi
  echo "trial $i mode=$([ $mode = 1 ] && echo force || echo fresh) delay=${delay}s -> $c (stages left: $st)"
done
echo "SUMMARY trials=$N absent=$absent complete_new=$new complete_old=$old half=$half half_accepted=$half_acc stages_left=$stages stages_cleaned_by_next=$cleaned"
rm -rf $W
