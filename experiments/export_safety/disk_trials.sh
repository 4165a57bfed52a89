#!/bin/bash
# Usage: [E=path/to/evobudget] disk_trials.sh (as root: it mounts tmpfs file systems of 512 KiB to 32 MB)
# export into a small tmpfs of several sizes; classify exit code and OUT afterwards.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
E=${E:-$ROOT/build/evobudget}
W=$(mktemp -d -t disktr.XXXXXX); cd $W
echo '{"model": "'$ROOT'/assets/demo", "units": [], "drop": [{"block": 1, "sub": "mlp"}]}' > new.json
$E export --config new.json --out ref > /dev/null 2>&1 || exit 1
need=$(du -sk --apparent-size ref | cut -f1)
sum() { (cd $1 2>/dev/null && md5sum $(ls | sort) 2>/dev/null | md5sum | cut -c1-32); }
RN=$(sum ref)
echo "a complete export holds ${need} KiB"
mkdir mnt
n=0; ok=0; fail1=0; other=0; half=0; stage=0; hint=0; oldok=0; nforce=0
for kb in 512 2048 8192 16384 20480 21000 21100 21200 21240 21244 21248 21252 21256 21260 21280 21300 21400 22000 24000 32000; do
 for mode in fresh force; do
  mount -t tmpfs -o size=${kb}k tmpfs mnt || { echo "cannot mount tmpfs"; exit 2; }
  F=
  if [ $mode = force ]; then mkdir mnt/out && echo old > mnt/out/keep; F=--force; nforce=$((nforce+1)); fi
  $E export --config new.json --out mnt/out $F > /dev/null 2> err.txt; rc=$?
  n=$((n+1))
  if [ -e mnt/out ]; then
    if [ "$(sum mnt/out)" = "$RN" ]; then st=complete
    elif [ -f mnt/out/keep ] && [ $(ls mnt/out | wc -l) = 1 ]; then st=old-intact; oldok=$((oldok+1))
    else st=HALF; half=$((half+1)); fi
  else st=absent; fi
  s=$(ls -d mnt/out.* 2>/dev/null | wc -l); stage=$((stage+s))
  case $rc in 0) ok=$((ok+1));; 1) fail1=$((fail1+1)); grep -q "free disk space" err.txt && hint=$((hint+1));; *) other=$((other+1));; esac
  printf "%6s KiB %-5s exit %d  OUT %-10s stages %d  %s\n" $kb $mode $rc $st $s "$(grep -o 'error: .*' err.txt | cut -c1-110)"
  umount mnt
 done
done
echo "SUMMARY runs=$n exit0=$ok exit1=$fail1 other_exit=$other free_space_hint=$hint half=$half stages_left=$stage force_runs=$nforce old_intact=$oldok"
cd /; rm -rf $W
