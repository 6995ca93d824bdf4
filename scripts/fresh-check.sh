#!/usr/bin/env bash
# Proves that the README's set-up works on a machine where nothing is preinstalled. Our own
# machines and CI's keep whatever earlier sessions installed by hand, so a package that
# scripts/setup.sh forgets can stay hidden there for a long time; a user on a new Debian 12 finds
# it at once. This script is that user: it builds a minimal Debian 12 root with debootstrap
# (minbase: only the essential packages and apt, none of ours), clones the repository into it and,
# in a chroot with a clean environment, runs the README's first command exactly as the README
# writes it (read from the README of the checked commit, so this check cannot drift from it), then
# the Release CTest suite and the install test on the build that command made (or, with --full,
# the README's second command, the whole CI suite). It installs nothing into the root itself:
# whatever the README's command needs but does not install is a finding, not something to work
# around here.
#
# Nothing is cached between runs (no earlier root, no apt archives): a new user has none. Only
# committed work is checked (a clone of --ref, default HEAD), which is what CI and a user see.
# The host's apt sources and its Acquire:: settings are copied into the root, because the packages
# must come from the registry this machine is allowed to reach, exactly as the host's apt does.
#
# Recursion guard: scripts/test.sh (the README's second command) calls this script after its
# Release suite, and --full runs scripts/test.sh inside the root, which would call this script
# again, inside the root, forever. So the chroot's environment carries VQM_IN_FRESH_ROOT=1, and
# with it set this script does nothing and succeeds (first lines below).
#
# Needs root (debootstrap, mount, chroot), about 3 GB under ${TMPDIR:-/tmp}, and 15-25 minutes on
# 2 cores (the default); --full adds the sanitizer builds and fuzzing of scripts/test.sh.
# Usage: bash scripts/fresh-check.sh [--full] [--ref REF] [--keep]
#   --full     run the README's second command (scripts/test.sh) instead of only the CTest suite
#   --ref REF  the commit to check (default HEAD)
#   --keep     leave the root in place afterwards (still unmounted) and print its path
# Exit status: 0 passed, 1 a step failed (its own status is in the last line), 2 bad flags,
# 128+N killed by signal N. In every case the root is unmounted, then deleted (unless --keep).
set -euo pipefail

if [ -n "${VQM_IN_FRESH_ROOT:-}" ]; then
  echo "fresh-check: already inside a fresh root, skipped"
  exit 0
fi

usage() {
  sed -n '/^# Usage:/,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
}

full=0
keep=0
ref=HEAD
while [ $# -gt 0 ]; do
  case $1 in
    --full) full=1 ;;
    --keep) keep=1 ;;
    --ref)
      if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "fresh-check: --ref needs a commit (try --help)" >&2
        exit 2
      fi
      ref=$2
      shift
      ;;
    --ref=?*) ref=${1#--ref=} ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "fresh-check: unknown argument '$1' (usage: bash scripts/fresh-check.sh [--full] [--ref REF] [--keep])" >&2
      exit 2
      ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-check: must run as root (debootstrap, mount and chroot need it); try: sudo bash $0" >&2
  exit 1
fi

# Never fails: after a Ctrl-C on `... | tee LOG` the reader may be gone, and the cleanup that
# follows a message must still run.
log() { echo "fresh-check: $*" 2>/dev/null || true; }
die() {
  echo "fresh-check: $*" >&2
  exit 1
}

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) ||
  die "$(dirname "$0") is not inside a git repository"
commit=$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}") || {
  echo "fresh-check: --ref $ref is not a commit of $repo" >&2
  exit 2
}
short=$(git -C "$repo" rev-parse --short "$commit")
mode=default
[ "$full" -eq 1 ] && mode=full
if [ "$ref" = HEAD ] && [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  log "note: uncommitted changes in $repo are not checked (only commit $short is)"
fi

# The commands come from the README of the commit under test, read before the long debootstrap
# so that a README that lost its set-up block fails in a second, not in ten minutes.
# $1 = which line of the first ```sh block (1 or 2); prints it without its trailing # comment.
readme_command() {
  # The readers consume all their input (no early `exit`): under pipefail, a writer cut off by a
  # reader that left early dies of SIGPIPE, and that fails this whole script (exit 141).
  git -C "$repo" show "$commit:README.md" |
    awk -v want="$1" '
      !inblock && !done && /^```sh[[:space:]]*$/ { inblock = 1; next }
      inblock && /^```/ { inblock = 0; done = 1; next }
      inblock && ++n == want { print }' |
    sed -E 's/[[:space:]]#.*$//; s/^[[:space:]]+//; s/[[:space:]]+$//'
}
cmd1=$(readme_command 1)
cmd2=$(readme_command 2)
[ -n "$cmd1" ] || die "README.md at $short has no first command in its first \`\`\`sh block"
[ "$full" -eq 0 ] || [ -n "$cmd2" ] ||
  die "README.md at $short has no second command in its first \`\`\`sh block"

# debootstrap must use the mirror the host's apt uses: this machine reaches no other.
# Prints the first bookworm mirror and stops (no `| head`: see readme_command on SIGPIPE).
find_mirror() {
  local f hit
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    hit=$(awk 'BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[[:space:]]*#/) continue
          if (tolower($i) ~ /^uris:/) { uris = $i; sub(/^[^:]*:[[:space:]]*/, "", uris) }
          if (tolower($i) ~ /^suites:/) { suites = " " $i " "; sub(/^ [^:]*:/, " ", suites) }
          if (tolower($i) ~ /^types:/) types = " " $i " "
          if (tolower($i) ~ /^enabled:[[:space:]]*no/) enabled = "no"
        }
        if (enabled == "yes" && types ~ /[[:space:]]deb[[:space:]]/ &&
            suites ~ /[[:space:]]bookworm[[:space:]]/ && uris != "") {
          split(uris, u, /[[:space:]]+/); print u[1]; exit
        }
      }' "$f")
    if [ -n "$hit" ]; then
      echo "$hit"
      return 0
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # One-line form; the [options] part is dropped first.
    hit=$(awk '{ sub(/\[[^]]*\]/, "") } $1 == "deb" && $3 == "bookworm" { print $2; exit }' "$f")
    if [ -n "$hit" ]; then
      echo "$hit"
      return 0
    fi
  done
  return 0
}
mirror=$(find_mirror)
[ -n "$mirror" ] || die "no 'deb ... bookworm' source in /etc/apt/sources.list{,.d}: which mirror?"

if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
  log "installing debootstrap on the host"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap \
    >/dev/null
fi
debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)

# --- the root, and the cleanup that must never delete through a mount ---------------------------

root=$(mktemp -d "${TMPDIR:-/tmp}/vqm-fresh.XXXXXXXXXX")
# /proc/mounts escapes blanks and backslashes; a plain path keeps the mount checks exact.
case $root in
  *[[:space:]\\]*)
    rmdir "$root"
    die "TMPDIR must not contain blanks or backslashes: $root"
    ;;
esac
# mktemp makes it 0700; as the root's / that would lock out every user but root (apt's _apt).
chmod 0755 "$root"
bootlog=$root.debootstrap.log
step_pid=
current_step=
why=
timings=()
start=$SECONDS

# Mount points at or under the root, deepest (latest mounted) first.
mounts_under_root() {
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | tac
}

# Processes whose root directory is inside ours: the chroot's, including any that left the step's
# process group (script(1) in a test starts its own session).
processes_in_root() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    if [ "$r" = "$root" ] || [ "${r#"$root"/}" != "$r" ]; then echo "${p#/proc/}"; fi
  done
}

stop_step_processes() {
  local i sig pids
  for i in 1 2 3 4 5 6 7 8 9 10; do
    sig=TERM
    [ "$i" -gt 5 ] && sig=KILL
    pids=$(processes_in_root)
    if [ -n "$step_pid" ] && kill -0 -- "-$step_pid" 2>/dev/null; then
      kill -s "$sig" -- "-$step_pid" 2>/dev/null
    elif [ -z "$pids" ]; then
      return 0
    fi
    # shellcheck disable=SC2086  # one pid per word
    [ -z "$pids" ] || kill -s "$sig" $pids 2>/dev/null
    sleep 1
  done
  [ -z "$(processes_in_root)" ] || log "warning: processes still running in $root"
}

cleanup() {
  local rc=$? m left
  # A second Ctrl-C, or a reader gone from our stdout (SIGPIPE), must not cut the cleanup short
  # and leave /dev bound under a tree to delete.
  trap '' INT TERM HUP PIPE
  set +e
  stop_step_processes
  for m in $(mounts_under_root); do
    umount "$m" 2>/dev/null || umount -l "$m" || log "warning: cannot unmount $m"
  done
  left=$(mounts_under_root)
  if [ -n "$left" ]; then
    log "NOT deleting $root: still mounted: $(echo "$left" | tr '\n' ' ')"
    [ "$rc" -ne 0 ] || rc=1
  elif [ "$keep" -eq 1 ]; then
    log "kept the root (unmounted) at $root"
  else
    log "deleting $root"
    # --one-file-system: even if a mount slipped past the check, rm stays off it.
    rm -rf --one-file-system "$root"
  fi
  rm -f "$bootlog"
  local summary="${timings[*]:-}" total=$((SECONDS - start))
  summary=${summary// /, }
  summary=${summary//_/ }
  if [ "$rc" -eq 0 ]; then
    log "PASS $short ($mode): $summary; total ${total}s"
  else
    [ -n "$why" ] || why="exit $rc"
    log "FAIL $short ($mode) at ${current_step:-setup} ($why): ${summary:-nothing done}; total ${total}s"
  fi
  exit "$rc"
}
trap cleanup EXIT
on_signal() {
  trap '' INT TERM HUP PIPE
  why="interrupted by SIG$1"
  log "$why"
  exit "$2"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP
# A handler, not an ignore: the steps' own processes keep the default SIGPIPE.
trap 'on_signal PIPE 141' PIPE

# Runs a step in its own session (so the cleanup can end all of it by its process group) in the
# background (so that a signal reaches our trap at once; bash runs traps only between commands).
# $1 = name (underscores for spaces), $2 = file for its output or - for ours, then the command.
run_step() {
  local name=$1 out=$2 t0=$SECONDS step_rc=0
  shift 2
  current_step=${name//_/ }
  if [ "$out" = - ]; then
    setsid --wait "$@" &
  else
    setsid --wait "$@" >"$out" 2>&1 &
  fi
  step_pid=$!
  wait "$step_pid" || step_rc=$?
  step_pid=
  timings+=("${name}_$((SECONDS - t0))s")
  log "${name//_/ } took $((SECONDS - t0))s (exit $step_rc)"
  if [ "$step_rc" -ne 0 ]; then
    why="exit $step_rc"
    [ "$out" = - ] || tail -n 30 "$out" >&2
    exit 1
  fi
  current_step=
}

log "checking $short ($mode) in a new Debian 12 root at $root, mirror $mirror"
log "debootstrap --variant=minbase bookworm (log: $bootlog)"
run_step debootstrap "$bootlog" "$debootstrap" --variant=minbase bookworm "$root" "$mirror"

# The host's apt sources and registry settings (not docker's or the host's own package hooks):
# bookworm-updates and bookworm-security must come from where the host's come from.
rm -f "$root/etc/apt/sources.list"
[ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ ! -f "$f" ] || cp "$f" "$root/etc/apt/sources.list.d/"
done
for f in /etc/apt/apt.conf.d/*; do
  case ${f##*/} in docker-*) continue ;; esac
  # Only files made of Acquire:: settings alone (comments aside).
  if [ -f "$f" ] && grep -qE '^[[:space:]]*Acquire::' "$f" &&
    ! grep -vqE '^[[:space:]]*($|//|#|Acquire::)' "$f"; then
    cp "$f" "$root/etc/apt/apt.conf.d/"
    log "copied apt setting ${f##*/}"
  fi
done
[ ! -e /etc/resolv.conf ] || cp -L --remove-destination /etc/resolv.conf "$root/etc/resolv.conf"

git clone -q --no-checkout "$repo" "$root/root/vqm"
git -C "$root/root/vqm" -c advice.detachedHead=false checkout -q --detach "$commit"

# script(1) in a test needs /dev/pts; POSIX shared memory needs /dev/shm. A new proc mount (not a
# bind) has no host sub-mounts. Private: on hosts where / is shared, nothing propagates back.
mount -t proc proc "$root/proc"
mount --make-private "$root/proc"
for d in /dev /dev/pts /dev/shm; do
  [ -d "$d" ] || continue
  mkdir -p "$root$d"
  mount --bind "$d" "$root$d"
  mount --make-private "$root$d"
done

# VQM_CMAKE_ARGS: the build is the README's with warnings as errors, so that this build is also
# the project's gcc -Werror check (on a clean checkout scripts/test.sh builds nothing else with
# gcc).
in_root=(env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
         TERM=dumb LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive VQM_IN_FRESH_ROOT=1
         VQM_CMAKE_ARGS=-DVQM_WERROR=ON)
[ -z "${CI+set}" ] || in_root+=("CI=$CI")
in_root+=(chroot "$root" /bin/bash -c)

log "README first command, in /root/vqm of the root: $cmd1"
run_step README_first_command - "${in_root[@]}" "cd /root/vqm || exit 1
$cmd1"

if [ "$full" -eq 1 ]; then
  log "README second command, in /root/vqm of the root: $cmd2"
  run_step README_second_command - "${in_root[@]}" "cd /root/vqm || exit 1
$cmd2"
else
  log "Release suite, in /root/vqm of the root: ctest --test-dir build --output-on-failure -j2"
  run_step ctest - "${in_root[@]}" \
    "cd /root/vqm && ctest --test-dir build --output-on-failure -j2"
  log "install test, in /root/vqm of the root: bash scripts/test-install.sh build"
  run_step install_test - "${in_root[@]}" "cd /root/vqm && bash scripts/test-install.sh build"
fi
