#!/usr/bin/env bash
# gokube alone on many inventory hosts: SIZES (default 10 100 1000)
# inventory names spread over SCALE_HOSTS lab hosts (default 3), each name
# with its own working directory (app_dir=/opt/gkscale/NAME), one SSH
# connection and login session per name as for distinct machines. For each
# size: the one-task play and the 31-task play warm (the names' directories
# are first made in the converged state by one root script per lab host,
# untimed, so the warm run is also the first to see them: it hashes the
# files once and fills its checksum cache), with
# wall time, gokube's peak memory and CPU (bench/benchtime) and the
# per-name cost, so growth from size to size reads off the table.
# Writes bench/results/<date>-scale.csv and .md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/gokube}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
LAB=${SCALE_LAB:-gks}
SUBNET=${SCALE_SUBNET:-10.234.0.0/24}
NHOSTS=${SCALE_HOSTS:-3}
SIZES=${SIZES:-10 100 1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
stamp=$(date -u +%Y-%m-%dT%H%MZ)
csv=bench/results/$stamp-scale.csv
md=bench/results/$stamp-scale.md
$GO build -o "$work/benchtime" ./bench/benchtime
$BIN lab up "$NHOSTS" --name "$LAB" --subnet "$SUBNET" >/dev/null
$BIN lab inventory --name "$LAB" -o "$work/lab.cfg"
# sshd drops new connections past MaxStartups (10) unauthenticated ones;
# up to --forks (50) handshakes reach the few lab hosts at once.
for i in $(seq "$NHOSTS"); do
  $BIN lab ssh --name "$LAB" "$LAB-$i" sh -c "'printf \"MaxStartups 200:30:400\n\" >/etc/ssh/sshd_config.d/gokube-scale.conf && systemctl reload ssh'"
done
# The benchmark's play with app_dir taken from the inventory.
cp -r bench/gokube "$work/play"
sed -i '/^    app_dir:/d' "$work/play/site.yml"
# The user, group and unit every name shares, once per lab host.
$BIN lab inventory --name "$LAB" --groups "bench=1-$NHOSTS" -o "$work/base.cfg"
$BIN play -i "$work/base.cfg" -e app_dir=/opt/gkscale/base "$work/play/site.yml" >/dev/null

echo "size,playbook,seconds,peak_kb,cpu_s,changed,load1" >"$work/raw.csv"
summary() {
cp "$work/raw.csv" "$csv"
python3 - "$csv" "$md" "$NHOSTS" <<'PY'
import csv, sys, os, datetime
rows = list(csv.DictReader(open(sys.argv[1])))
lines = [f"`bench/scale.sh` (make bench-scale), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; gokube only, inventory names spread over {sys.argv[3]} lab hosts, one run each", "",
         "| inventory hosts | play | wall | per name | peak memory | per name | CPU (gokube) | per name | changed | load avg |", "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    n = int(r["size"]); s = float(r["seconds"]); kb = int(r["peak_kb"]); c = float(r["cpu_s"])
    what = "1 task" if r["playbook"] == "one.yml" else "31 tasks, warm"
    lines.append(f"| {n} | {what} | {s:.2f} s | {1000*s/n:.1f} ms | {kb/1024:.0f} MB | {kb/n:.0f} KB | {c:.2f} s | {1000*c/n:.1f} ms | {r['changed']} | {r['load1']} |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
}
for n in $SIZES; do
  inv=$work/inv-$n.cfg
  # NAME ansible_host=... (the lab host's line, renamed) app_dir=...
  python3 - "$work/lab.cfg" "$n" "$NHOSTS" "$inv" <<'PY'
import sys
lab, n, nh, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lines = [l.rstrip("\n") for l in open(lab)]
hostlines = [l for l in lines if l and not l.startswith(("#", "[")) and "ansible_host=" in l][:nh]
with open(out, "w") as f:
    f.write("[all]\n")
    for i in range(n):
        name = f"s{n}-{i + 1}"
        rest = hostlines[i % nh].split(" ", 1)[1]
        f.write(f"{name} {rest} app_dir=/opt/gkscale/{name}\n")
    f.write("\n[bench]\n" + "".join(f"s{n}-{i + 1}\n" for i in range(n)))
PY
  # The converged state for every name, one script per lab host (untimed).
  names=$(awk '/^\[bench\]/{b=1;next} b&&NF{print $1}' "$inv")
  for i in $(seq "$NHOSTS"); do
    {
      echo "set -e; cd /opt/gkscale/base"
      k=0
      for name in $names; do
        k=$((k + 1))
        [ $(( (k - 1) % NHOSTS + 1 )) = "$i" ] || continue
        d=/opt/gkscale/$name
        echo "rm -rf $d; cp -a /opt/gkscale/base $d; rm $d/app.conf $d/logs; ln -s $d/conf/app.conf $d/app.conf; ln -s $d/log $d/logs"
        printf "printf '# gkbench on %s\\\\nlisten = 0.0.0.0:8080\\\\ndata = %s/data\\\\n' >%s/conf/app.conf\n" "$name" "$d" "$d"
      done
      echo "cat >/tmp/gkscale-hosts <<'EOF'"
      echo "$names"
      echo "EOF"
      echo "for d in /opt/gkscale/s$n-*; do cp /tmp/gkscale-hosts \$d/conf/hosts; done"
    } >"$work/prep-$i.sh"
    $BIN lab ssh --name "$LAB" "$LAB-$i" sh -s <"$work/prep-$i.sh" &
  done
  wait
  for pb in one.yml site.yml; do
    "$work/benchtime" -o "$work/time" -- $BIN play -i "$inv" "$work/play/$pb" --output json >"$work/out.json" || {
      echo "gokube failed on $n names ($pb):" >&2; python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(h, s) for h, s in d["hosts"].items() if s.get("failed") or s.get("unreachable")]' "$work/out.json" | head -5 >&2; }
    changed=$(python3 -c 'import json,sys; print(sum(s["changed"] for s in json.load(open(sys.argv[1]))["hosts"].values()))' "$work/out.json")
    read -r secs kb user sys <"$work/time"
    echo "$n,$pb,$secs,$kb,$(echo "$user + $sys" | bc),$changed,$(cut -d' ' -f1 /proc/loadavg)" >>"$work/raw.csv"
    printf '  %5d names %-8s %8.2f s %8d KB peak %7.2f s CPU, changed %s\n' "$n" "$pb" "$secs" "$kb" "$(echo "$user + $sys" | bc)" "$changed"
  done
  for i in $(seq "$NHOSTS"); do $BIN lab ssh --name "$LAB" "$LAB-$i" sh -c "'rm -rf /opt/gkscale/s$n-*'" & done
  wait
  summary >/dev/null
done
summary
echo "wrote $csv and $md"
