#!/usr/bin/env bash
# End to end under a real systemd: Debian containers (systemd-nspawn, each
# booting systemd as PID 1 in its own network namespace), each set up by
# running the shell blocks of systemd/README.md's "Install, on each server"
# section as written, the first of which installs the package under test
# (`apt install ./ringsync_*.deb`). Then: write, sync, SIGKILL one node,
# watch the others fall back, write while it is away, start it again, watch
# it catch up and the ring resume, check that systemd restarts a node killed
# behind its back, reload, and reinstall the package over a running node
# (the edited topology, a conffile, is kept). Then a fourth container joins
# the running three by README's "Changing the ring" blocks, as written:
# every server gets the new topology (epoch + 1) and is reloaded, then the
# new one starts empty and catches up. Last, the package is removed (no
# node left running) and purged (/etc/ringsync gone, the data kept).
#
# Usage: tests/systemd/e2e.sh PATH_TO_RINGSYNC_DEB
# Exit 0: passed. Exit 77: skipped (not root, no nspawn, no network for
# debootstrap, containers cannot boot), with the reason on stdout. Anything
# else: failed, with the nodes' journals.
#
# Everything made here (containers, network namespaces, veth pairs, the
# staging dir) is removed on every exit path. The Debian root is cached in
# $RINGSYNC_TEST_ROOT (default /var/cache/ringsync-test-root) and mounted
# read-only under a tmpfs overlay (--volatile=overlay), so the three
# containers share it and never change it.
set -euo pipefail

DEB=${1:?usage: $0 PATH_TO_RINGSYNC_DEB}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ROOT=${RINGSYNC_TEST_ROOT:-/var/cache/ringsync-test-root}
# Every container; the ring starts with the first three, db4 joins later.
ALL=(db1 db2 db3 db4)
IDS=(db1 db2 db3)
SUBNET=10.231.0
PORT=7100
# Deadlines, in seconds. Booting a container takes a few seconds; the
# cluster runs 300 ms cycles, so a mode change or a catch-up takes a few.
BOOT_DEADLINE=90
CLUSTER_DEADLINE=60

skip() { echo "SKIPPED: $*"; exit 77; }
say() { echo "--- $*"; }

[ "$(id -u)" = 0 ] || skip "the nspawn end-to-end test needs root (containers and network namespaces)"
[ -f "$DEB" ] || { echo "no package at $DEB"; exit 2; }

need=()
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "missing ${need[*]} and no apt-get to install them"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || true
         apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null 2>&1; } \
    || skip "could not install ${need[*]}"
fi

# The Debian root, built once (about 260 MB, a minute or two) and kept.
# Built beside its final place and renamed, so a half-built root is never
# taken for a whole one; a lock keeps two runs from building it at once.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
# procps gives /bin/kill, which the unit's ExecReload= runs; every Debian
# server install has it, minbase does not.
if [ ! -x "$ROOT/usr/lib/systemd/systemd" ] || [ ! -x "$ROOT/bin/kill" ]; then
  say "building the container root in $ROOT (once)"
  rm -rf "$ROOT.tmp"
  if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,curl,procps \
      bookworm "$ROOT.tmp" >"$ROOT.debootstrap.log" 2>&1; then
    rm -rf "$ROOT.tmp"
    skip "debootstrap failed (no network to a Debian mirror?); see $ROOT.debootstrap.log"
  fi
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
fi
flock -u 9

# Names unique to this run; interface names stay under 15 characters.
TAG=rs$$
SW=$TAG-sw
WORK=$(mktemp -d /tmp/ringsync-e2e.XXXXXX)
declare -A NSPAWN LEADER

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    for id in "${ALL[@]}"; do
      [ -n "${LEADER[$id]:-}" ] || continue
      echo "=== $id: systemctl status / journal"
      in_ "$id" systemctl status --no-pager "ringsync@$id" 2>&1 | tail -20
      in_ "$id" journalctl --no-pager -u "ringsync@$id" 2>&1 | tail -40
    done
  fi
  for id in "${ALL[@]}"; do
    local p=${NSPAWN[$id]:-}
    [ -n "$p" ] || continue
    # SIGTERM makes nspawn power the container off; SIGKILL if it lingers.
    kill -TERM "$p" 2>/dev/null
  done
  for id in "${ALL[@]}"; do
    local p=${NSPAWN[$id]:-}
    [ -n "$p" ] || continue
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for id in "${ALL[@]}"; do
    ip netns del "$TAG-$id" 2>/dev/null
    ip link del "$TAG$id" 2>/dev/null   # a veth not yet moved into the switch
  done
  ip netns del "$SW" 2>/dev/null
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command inside container $1 (all its namespaces, as root).
in_() {
  local id=$1; shift
  SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 nsenter -t "${LEADER[$id]}" -a "$@"
}

# Polls `$2...` in container $1 until it succeeds, or fails naming $what.
wait_in() {
  local what=$1 deadline=$2 id=$3; shift 3
  local end=$((SECONDS + deadline))
  until in_ "$id" "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "FAILED: timed out after ${deadline}s waiting until $what"
      echo "last try: $(in_ "$id" "$@" 2>&1 | tail -5)"
      exit 1
    fi
    sleep 0.2
  done
}

addr() { echo "$SUBNET.$(( $1 + 1 )):$PORT"; }
url() { echo "http://$(addr "$1")"; }
n_of() { local i; for i in "${!ALL[@]}"; do if [ "${ALL[$i]}" = "$1" ]; then echo "$i"; fi; done; }

# ---- network: one namespace per container, joined by a bridge in a
# namespace of its own, so nothing on the host's network changes.
say "network namespaces"
ip netns add "$SW" || skip "cannot create network namespaces"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in "${!ALL[@]}"; do
  id=${ALL[$i]}
  ip netns add "$TAG-$id"
  ip link add "$TAG$id" type veth peer name eth0 netns "$TAG-$id"
  ip link set "$TAG$id" netns "$SW"
  ip -n "$SW" link set "$TAG$id" master br0 up
  ip -n "$TAG-$id" link set lo up
  ip -n "$TAG-$id" addr add "$SUBNET.$((i + 1))/24" dev eth0
  ip -n "$TAG-$id" link set eth0 up
done

# ---- what the README's commands expect in their working directory: the
# package, copied to the server.
STAGE=$WORK/src
mkdir -p "$STAGE"
cp "$DEB" "$STAGE/"
chmod -R a+rX "$STAGE"

# ---- boot the containers
say "booting ${ALL[*]}"
for id in "${ALL[@]}"; do
  systemd-nspawn --register=no --keep-unit --quiet -D "$ROOT" --volatile=overlay -b \
    --machine="$TAG-$id" --network-namespace-path="/run/netns/$TAG-$id" \
    --bind-ro="$STAGE:/src" --console=passive </dev/null >"$WORK/nspawn-$id.log" 2>&1 &
  NSPAWN[$id]=$!
done
for id in "${ALL[@]}"; do
  end=$((SECONDS + BOOT_DEADLINE))
  while :; do
    kill -0 "${NSPAWN[$id]}" 2>/dev/null \
      || skip "systemd-nspawn exited while booting $id: $(tail -3 "$WORK/nspawn-$id.log")"
    leader=$(cat /proc/"${NSPAWN[$id]}"/task/*/children 2>/dev/null | awk '{print $1}' || true)
    if [ -n "$leader" ]; then
      LEADER[$id]=$leader
      state=$(in_ "$id" systemctl is-system-running 2>/dev/null || true)
      case $state in running|degraded) break ;; esac
    fi
    [ $SECONDS -lt $end ] || skip "container $id did not boot within ${BOOT_DEADLINE}s (state: ${state:-none})"
    sleep 0.5
  done
done

# ---- install, as systemd/README.md says
# The topology of epoch $1 whose ring is the ids that follow.
topology() {
  local epoch=$1 id; shift
  echo '[cluster]'
  echo 'name = "e2e"'
  echo 'interval = "300ms"'
  echo 'peer_timeout = "150ms"'
  echo 'failure_threshold = 2'
  echo "epoch = $epoch"
  for id in "$@"; do
    printf '\n[[node]]\nid = "%s"\naddr = "%s"\n' "$id" "$(addr "$(n_of "$id")")"
  done
}
TOPOLOGY=$WORK/topology.toml
topology 0 "${IDS[@]}" >"$TOPOLOGY"

# Block $3 (a block per ```sh fence) of the section titled $2 in $1.
readme_block() {
  awk -v title="## $2" '$0 == title {f=1;next} /^## /{f=0} f' "$REPO/$1" \
    | awk -v want="$3" '/^```sh/{b=1;n++;next} /^```/{b=0;next} b && n==want'
}
INSTALL=(systemd/README.md "Install, on each server")
[ -n "$(readme_block "${INSTALL[@]}" 4)" ] \
  || { echo "FAILED: systemd/README.md has no 4 install blocks"; exit 1; }
# Runs the text on stdin in container $1 (in $RUN_DIR, /src by default),
# written for db1 on loopback, as typed on server $1 at its own address.
run_as() {
  local id=$1 text
  text=$(sed -e "s/db1/$id/g" -e "s/127\.0\.0\.1:$PORT/$(addr "$(n_of "$id")")/g")
  echo "[$id] $text" | sed '2,$s/^/      /'
  in_ "$id" bash -euc "cd ${RUN_DIR:-/src}; $text"
}
run_block() { readme_block "${INSTALL[@]}" "$2" | run_as "$1"; }

# No node runs until the operator starts one: installing starts nothing.
no_node_runs() {
  local active
  active=$(in_ "$1" systemctl list-units --no-legend --plain --state=active 'ringsync@*')
  [ -z "$active" ] || { echo "FAILED: on $1, $2: $active"; exit 1; }
}

for id in "${IDS[@]}"; do
  run_block "$id" 1                                     # apt install ./ringsync_*.deb
  no_node_runs "$id" "a node runs right after the install"
  in_ "$id" grep -q '^name = "orders-prod"' /etc/ringsync/topology.toml \
    || { echo "FAILED: $id: /etc/ringsync/topology.toml is not the commented example"; exit 1; }
  in_ "$id" bash -c 'cat > /etc/ringsync/topology.toml' <"$TOPOLOGY"   # "Edit ..."
  run_block "$id" 2                                     # topology check
done
say "installed from the package on ${IDS[*]}: nothing started, the example topology in /etc/ringsync"
run_block db1 3                                         # the secret and a token, made on one server...
in_ db1 cat /etc/ringsync/secret >"$WORK/secret"
in_ db1 cat /etc/ringsync/tokens >"$WORK/tokens"
# ...and copied to db2 as the README says. db3 gets them only after showing
# that, without a secret, a node off loopback refuses to start and says why.
copy_secrets() {
  in_ "$1" bash -c '(umask 077; cat > /etc/ringsync/secret)' <"$WORK/secret"
  in_ "$1" bash -c '(umask 077; cat > /etc/ringsync/tokens)' <"$WORK/tokens"
}
copy_secrets db2
in_ db3 systemctl daemon-reload
if in_ db3 systemctl start ringsync@db3 >/dev/null 2>&1; then
  echo "FAILED: ringsync@db3 started without a secret on $(addr 2)"; exit 1
fi
wait_in "db3's journal says why it did not start" "$CLUSTER_DEADLINE" db3 \
  bash -c 'journalctl -u ringsync@db3 --no-pager | grep -q "no cluster secret, and this node listens on"'
say "db3 without a secret: refused to start, and its journal says why"
in_ db3 systemctl stop ringsync@db3 >/dev/null 2>&1 || true
in_ db3 systemctl reset-failed ringsync@db3 >/dev/null 2>&1 || true
copy_secrets db3
for id in "${IDS[@]}"; do
  run_block "$id" 4 >"$WORK/block4-$id.log" 2>&1 \
    || { cat "$WORK/block4-$id.log"; echo "FAILED: README block 4 on $id"; exit 1; }
  grep -q '^ready$' "$WORK/block4-$id.log" \
    || { cat "$WORK/block4-$id.log"; echo "FAILED: $id not ready right after enable --now"; exit 1; }
done
# What clients present: the token (first word of the tokens file), and the
# secret for a manual sync, as systemd/README.md's Operating table shows.
TOKEN=$(cut -d' ' -f1 "$WORK/tokens")
AUTH="authorization: Bearer $TOKEN"

# ---- what systemd sees
for id in "${IDS[@]}"; do
  [ "$(in_ "$id" systemctl is-active "ringsync@$id")" = active ] \
    || { echo "FAILED: ringsync@$id is not active"; exit 1; }
  pid=$(in_ "$id" systemctl show -p MainPID --value "ringsync@$id")
  uid=$(in_ "$id" stat -c %u "/proc/$pid")
  [ "$uid" != 0 ] || { echo "FAILED: ringsync@$id runs as root"; exit 1; }
  wait_in "a STATUS= line with the mode on $id" "$CLUSTER_DEADLINE" "$id" \
    bash -c "systemctl show -p StatusText --value ringsync@$id | grep -q '^mode ring, cycle'"
done
# The secret and tokens reached db1 as its credentials, and it signs with them.
for f in secret tokens; do
  [ "$(in_ db1 cat "/run/credentials/ringsync@db1.service/$f")" = "$(cat "$WORK/$f")" ] \
    || { echo "FAILED: db1's credential $f differs from /etc/ringsync/$f"; exit 1; }
done
in_ db1 journalctl -u ringsync@db1 --no-pager | grep -q "peer and sync requests are signed" \
  || { echo "FAILED: db1 does not say it signs its requests"; exit 1; }
say "all three active, not root, signing; status: $(in_ db1 systemctl show -p StatusText --value ringsync@db1)"

# Without the token, the client API refuses; without a signature, so does sync.
code=$(in_ db1 curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x "$(url 0)/v1/kv/k0")
[ "$code" = 401 ] || { echo "FAILED: a write without a token got HTTP $code"; exit 1; }
code=$(in_ db1 curl -s -o /dev/null -w '%{http_code}' -X POST "$(url 0)/v1/sync")
[ "$code" = 401 ] || { echo "FAILED: an unsigned sync got HTTP $code"; exit 1; }
say "no token: 401; unsigned sync: 401"

wait_mode() { # node id, mode
  wait_in "$1 reports mode $2" "$CLUSTER_DEADLINE" "$1" \
    bash -c "curl -fsS $(url "$(n_of "$1")")/v1/status | grep -q '\"mode\":\"$2\"'"
}

# ---- write, sync, read everywhere
in_ db1 curl -fsS -H "$AUTH" -X PUT --data-binary one "$(url 0)/v1/kv/k1" >/dev/null
report=$(in_ db1 env RINGSYNC_SECRET_FILE=/etc/ringsync/secret ringsync sync --json --node "$(url 0)") \
  || { echo "FAILED: sync: $report"; exit 1; }
echo "$report" | grep -q '"converged": true' || { echo "FAILED: sync: $report"; exit 1; }
for id in db2 db3; do
  [ "$(in_ "$id" curl -fsS -H "$AUTH" "$(url "$(n_of "$id")")/v1/kv/k1")" = one ] \
    || { echo "FAILED: $id does not hold k1 after the sync"; exit 1; }
done
say "write at db1 (with the token) and a signed sync: every node holds k1"

# ---- SIGKILL db2 and keep it down (stop cancels the automatic restart)
in_ db2 systemctl kill -s SIGKILL "ringsync@db2"
in_ db2 systemctl stop "ringsync@db2"
wait_mode db1 fallback
wait_mode db3 fallback
say "db2 killed: db1 and db3 are in fallback"
in_ db1 curl -fsS -H "$AUTH" -X PUT --data-binary two "$(url 0)/v1/kv/k2" >/dev/null
wait_in "db3 holds k2 (written while db2 was down)" "$CLUSTER_DEADLINE" db3 \
  bash -c "[ \"\$(curl -fsS -H '$AUTH' $(url 2)/v1/kv/k2)\" = two ]"

# ---- start db2 again: it catches up, and the ring resumes
in_ db2 systemctl start "ringsync@db2"
wait_in "db2 caught up with k2" "$CLUSTER_DEADLINE" db2 \
  bash -c "[ \"\$(curl -fsS -H '$AUTH' $(url 1)/v1/kv/k2)\" = two ]"
wait_mode db1 ring
wait_mode db3 ring
say "db2 back: caught up, the ring resumed"

# ---- systemd restarts a node killed behind its back (Restart=on-failure)
in_ db3 systemctl kill -s SIGKILL "ringsync@db3"
wait_in "systemd restarted db3" "$CLUSTER_DEADLINE" db3 \
  bash -c '[ "$(systemctl show -p NRestarts --value ringsync@db3)" -ge 1 ] && systemctl is-active -q ringsync@db3'
wait_in "db3 ready again" "$CLUSTER_DEADLINE" db3 curl -fsS "$(url 2)/readyz"
say "db3 SIGKILLed: restarted by systemd"

# ---- reload and metrics
in_ db1 systemctl reload "ringsync@db1"
wait_in "db1 logged its reload" "$CLUSTER_DEADLINE" db1 \
  bash -c 'journalctl -u ringsync@db1 --no-pager | grep -q "reload: "'
wait_in "db1's /metrics shows the ring mode" "$CLUSTER_DEADLINE" db1 \
  bash -c "curl -fsS $(url 0)/metrics | grep -q '^ringsync_mode{mode=\"ring\"} 1\$'"
say "reload logged; /metrics served"

# ---- the package again over a running node, as an upgrade does: the
# node keeps running, and the edited topology (a conffile) is kept.
pid=$(in_ db1 systemctl show -p MainPID --value ringsync@db1)
in_ db1 bash -c 'cd /src && apt-get install -y -qq --reinstall ./ringsync_*.deb' >"$WORK/reinstall.log" 2>&1 \
  || { cat "$WORK/reinstall.log"; echo "FAILED: reinstalling the package"; exit 1; }
in_ db1 cat /etc/ringsync/topology.toml | cmp -s - "$TOPOLOGY" \
  || { echo "FAILED: reinstalling the package changed the edited topology"; exit 1; }
[ "$(in_ db1 systemctl show -p MainPID --value ringsync@db1)" = "$pid" ] \
  || { echo "FAILED: reinstalling the package restarted or stopped ringsync@db1"; exit 1; }
grep -q "running nodes keep the old binary until restarted" "$WORK/reinstall.log" \
  || { cat "$WORK/reinstall.log"; echo "FAILED: the upgrade does not say the node needs a restart"; exit 1; }
say "package reinstalled over running db1: node untouched, edited topology kept"

# ---- a fourth server joins the running three by README's "Changing the
# ring", as written: the new topology (epoch 1) on every server, each
# reloaded in turn, then db4 installed and started. It catches up.
in_ db1 curl -fsS -H "$AUTH" -X PUT --data-binary three "$(url 0)/v1/kv/k3" >/dev/null
BEFORE=(k1 k2 k3)
NEW=$WORK/topology.new.toml
topology 1 "${ALL[@]}" >"$NEW"
RING=(README.md "Changing the ring")
[ -n "$(readme_block "${RING[@]}" 2)" ] \
  || { echo "FAILED: README.md's \"Changing the ring\" has no 2 blocks"; exit 1; }
# Block $2 of the ring change on server $1 (README's ID), in the folder
# where the new file was copied.
ring_block() {
  readme_block "${RING[@]}" "$2" | sed "s/@ID\b/@$1/g" | RUN_DIR=/root run_as "$1"
}
status_of() { in_ db1 curl -fsS "$(url "$(n_of "$1")")/v1/status"; }
field() { grep -o "\"$1\":\"\?[0-9a-z]*" | head -1 | sed 's/.*:"\?//'; }
for id in "${IDS[@]}"; do
  in_ "$id" bash -c 'cat > /root/topology.new.toml' <"$NEW"
  ring_block "$id" 1 >"$WORK/diff-$id.log" 2>&1 \
    || { cat "$WORK/diff-$id.log"; echo "FAILED: topology diff on $id"; exit 1; }
  grep -q '^rolling reload: yes' "$WORK/diff-$id.log" \
    || { cat "$WORK/diff-$id.log"; echo "FAILED: topology diff on $id does not allow a rolling reload"; exit 1; }
  ring_block "$id" 2
  wait_in "$id runs epoch 1" "$CLUSTER_DEADLINE" "$id" \
    bash -c "curl -fsS $(url "$(n_of "$id")")/v1/status | grep -q '\"epoch\":1[,}]'"
done
say "db1, db2, db3 reloaded onto epoch 1 (ring of four)"
run_block db4 1                                         # apt install ./ringsync_*.deb
in_ db4 bash -c 'cat > /etc/ringsync/topology.toml' <"$NEW"
run_block db4 2
copy_secrets db4
run_block db4 4 >"$WORK/block4-db4.log" 2>&1 \
  || { cat "$WORK/block4-db4.log"; echo "FAILED: README block 4 on db4"; exit 1; }
in_ db1 curl -fsS -H "$AUTH" -X PUT --data-binary four "$(url 0)/v1/kv/k4" >/dev/null
in_ db4 curl -fsS -H "$AUTH" -X PUT --data-binary five "$(url 3)/v1/kv/k5" >/dev/null
AFTER=(k4 k5)
for id in "${ALL[@]}"; do
  for k in "${BEFORE[@]}" "${AFTER[@]}"; do
    wait_in "$id holds $k" "$CLUSTER_DEADLINE" "$id" \
      curl -fsS -o /dev/null -H "$AUTH" "$(url "$(n_of "$id")")/v1/kv/$k"
  done
done
# Every node on epoch 1 in ring mode, with one digest root.
end=$((SECONDS + CLUSTER_DEADLINE))
while :; do
  states=()
  for id in "${ALL[@]}"; do
    s=$(status_of "$id" || true)
    states+=("$id epoch $(echo "$s" | field epoch) mode $(echo "$s" | field mode) root $(echo "$s" | field digest_root)")
  done
  roots=$(printf '%s\n' "${states[@]}" | awk '{print $7}' | sort -u | wc -l)
  if [ "$roots" = 1 ] && ! printf '%s\n' "${states[@]}" | grep -qv ' epoch 1 mode ring root [0-9a-f]\+$'; then
    break
  fi
  if [ $SECONDS -ge $end ]; then
    echo "FAILED: not every node on epoch 1 in ring mode with one root after ${CLUSTER_DEADLINE}s:"
    printf '  %s\n' "${states[@]}"
    exit 1
  fi
  sleep 0.2
done
say "db4 joined by rolling reload: holds ${BEFORE[*]} (before) and ${AFTER[*]} (after); all four on epoch 1, ring mode, root $(echo "${states[0]}" | awk '{print $7}')"

# ---- remove the package on db4: its node stops, systemd forgets the
# unit, the configuration and the data stay. Purge it: /etc/ringsync and
# the unit's enablement go, the data stays, and the purge says so.
in_ db4 test -L /etc/systemd/system/multi-user.target.wants/ringsync@db4.service \
  || { echo "FAILED: enable --now left no link to ringsync@db4"; exit 1; }
in_ db4 apt-get remove -y -qq ringsync >"$WORK/remove.log" 2>&1 \
  || { cat "$WORK/remove.log"; echo "FAILED: apt-get remove ringsync"; exit 1; }
no_node_runs db4 "a node still runs after apt-get remove"
[ "$(in_ db4 systemctl show -p LoadState --value ringsync@db4)" = not-found ] \
  || { echo "FAILED: systemd still knows ringsync@db4 after the removal"; exit 1; }
for f in /etc/ringsync/topology.toml /etc/ringsync/secret /var/lib/private/ringsync/db4/ringsync.redb; do
  in_ db4 test -e "$f" || { echo "FAILED: apt-get remove deleted $f"; exit 1; }
done
# What the stopped node left, to compare after the purge.
data=$(in_ db4 ls -lA --time-style=+%s.%N /var/lib/private/ringsync/db4)
in_ db4 apt-get purge -y -qq ringsync >"$WORK/purge.log" 2>&1 \
  || { cat "$WORK/purge.log"; echo "FAILED: apt-get purge ringsync"; exit 1; }
for f in /etc/ringsync /etc/systemd/system/multi-user.target.wants/ringsync@db4.service; do
  ! in_ db4 test -e "$f" -o -L "$f" || { echo "FAILED: apt-get purge left $f"; exit 1; }
done
[ "$(in_ db4 ls -lA --time-style=+%s.%N /var/lib/private/ringsync/db4)" = "$data" ] \
  || { echo "FAILED: apt-get purge touched db4's data"; exit 1; }
grep -q "data in /var/lib/ringsync .* is kept" "$WORK/purge.log" \
  || { cat "$WORK/purge.log"; echo "FAILED: the purge does not say the data is kept"; exit 1; }
no_node_runs db4 "a node runs after apt-get purge"
say "package removed on db4: no node left running, config and data kept; purged: /etc/ringsync gone, data kept"

echo "PASSED"
