# Prints, in a stable order, the host state the benchmark's plays touch
# (run as root on a lab host; bench/run.sh compares its output after each
# tool's cold run): every path under /opt/gkbench and the unit file with
# type, mode, owner, group, link target and sha256 of regular files (not
# times), the gkbench user and group, and the unit's systemd state.
export LC_ALL=C
for p in /opt/gkbench /etc/systemd/system/gkbench.service /etc/systemd/system/multi-user.target.wants/gkbench.service; do
  [ -e "$p" ] || [ -L "$p" ] || { echo "missing $p"; continue; }
  find "$p" -printf '%p %y %m %u %g %l\n'
done | sort
find /opt/gkbench /etc/systemd/system/gkbench.service -type f -exec sha256sum {} + 2>/dev/null | sort -k2
getent passwd gkbench || echo "no user gkbench"
getent group gkbench || echo "no group gkbench"
getent shadow gkbench | cut -d: -f1,2
systemctl show -p LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload gkbench.service
