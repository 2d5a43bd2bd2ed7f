#!/usr/bin/env bash
# Installs the machine-id agent from a machine-id auth service, which serves this script
# at /scripts/install.sh with its address, CA certificate and CA pin filled in below:
#
#   curl -fsSL --cacert ca.pem https://auth.example.com:3025/scripts/install.sh | sudo bash -s -- --token NAME
#
# It reads nothing from standard input (it runs piped into bash), downloads the binary for
# this architecture over HTTPS verified against the embedded CA, checks its SHA-256 before
# anything is installed, and is safe to run again. docs/install.md describes every option.
set -euo pipefail
umask 022

# BEGIN SERVED VALUES: filled in by the auth service (src/auth/install); empty in the template.
AUTH_SERVER=''
CA_PIN=''
CA_PEM=''
SERVER_VERSION=''
DEFAULT_JOIN_METHOD='bound_keypair'
DOWNLOAD_TRUST='embedded-ca'
AGENT_UNIT=''
TEMPLATE_UNIT=''
# The build's SHA-256 of each binary, as the auth service read it when it started (never
# from the download directory at request time): the download must match it.
SHA256_X64=''
SHA256_ARM64=''
# END SERVED VALUES

readonly SERVICE_USER=machine-id
readonly UNIT_EXEC_PATH=/usr/local/bin/machine-id

usage() {
	cat <<EOF
Usage: install.sh [--token NAME] [--join-method METHOD]
       install.sh --uninstall [--purge]

Installs machine-id from ${AUTH_SERVER:-an auth service} into \${PREFIX:-/usr/local}/bin, creates
the "${SERVICE_USER}" system user and /var/lib/machine-id, writes /etc/machine-id.yaml when it
does not exist, and installs and enables machine-id.service when systemd is running.

Options:
  --token NAME          join token written to /etc/machine-id.yaml (env MACHINE_ID_TOKEN)
  --join-method METHOD  join method in that config, default ${DEFAULT_JOIN_METHOD} (env MACHINE_ID_JOIN_METHOD)
  --uninstall           remove the binary and units; keeps config and data
  --purge               with --uninstall: also remove config, data and the system user
  -h, --help            show this help

Environment:
  PREFIX           install prefix, default /usr/local
  DESTDIR          stage everything below this directory (for packaging): no root needed,
                   no user is created and systemctl is not run
  MACHINE_ID_ARCH  architecture to install instead of \`uname -m\`
  MACHINE_ID_DOWNLOAD_FORMAT
                   zst, xz, gz or raw: download the binary in this form only (default: the
                   first of zst, xz, gz the auth service has and this host can decompress)
EOF
}

say() { printf '%s\n' "$*"; }
note() { printf 'NOTE: %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}
usage_error() {
	printf 'ERROR: %s\n' "$*" >&2
	printf 'Run with --help for usage.\n' >&2
	exit 2
}
have() { command -v "$1" >/dev/null 2>&1; }

# SHA-256 of a file ("-" for standard input of the function) as lowercase hex.
sha256_of() {
	local out
	if have sha256sum; then
		out=$(sha256sum "$1")
	elif have shasum; then
		out=$(shasum -a 256 "$1")
	elif have openssl; then
		out=$(openssl dgst -sha256 -r "$1")
	else
		die "Cannot verify the download: none of sha256sum, shasum or openssl is installed"
	fi
	printf '%s\n' "${out%% *}"
}

detect_arch() {
	local os machine
	os=$(uname -s)
	[ "$os" = Linux ] || die "Cannot install on \"$os\": machine-id runs on Linux only"
	machine=${MACHINE_ID_ARCH:-$(uname -m)}
	case "$machine" in
	x86_64 | amd64 | x64) ARCH=x64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) die "Cannot install on architecture \"$machine\": machine-id is built for x86_64 and aarch64 only" ;;
	esac
}

# The embedded CA certificate must be the one the pin names. openssl is only needed for
# this cross-check: without it the certificate is still used, because it arrived in the
# same script as the pin and checking one against the other adds no trust of its own.
check_ca() {
	printf '%s\n' "$CA_PEM" >"$TMP/ca.pem"
	if ! have openssl; then
		warn "openssl is not installed: cannot cross-check the embedded CA certificate against pin $CA_PIN"
		return 0
	fi
	local der actual
	der="$TMP/ca-spki.der"
	openssl x509 -in "$TMP/ca.pem" -noout -pubkey | openssl pkey -pubin -outform DER -out "$der" ||
		die "Cannot read the CA certificate embedded in this script"
	actual="sha256:$(sha256_of "$der")"
	[ "$actual" = "$CA_PIN" ] || die "The embedded CA certificate does not match pin $CA_PIN (it is $actual): the script was altered"
}

# Fetches $1 into $2; returns curl's or wget's exit code.
fetch() {
	local url=$1 dest=$2
	local -a trust=()
	if [ "$DOWNLOAD_TRUST" = embedded-ca ]; then
		if have curl; then trust=(--cacert "$TMP/ca.pem"); else trust=(--ca-certificate="$TMP/ca.pem"); fi
	fi
	if have curl; then
		curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 --retry 2 \
			${trust[@]+"${trust[@]}"} --output "$dest" "$url"
	elif have wget; then
		wget --quiet --https-only ${trust[@]+"${trust[@]}"} --output-document="$dest" "$url"
	else
		die "Cannot download \"$url\": neither curl nor wget is installed"
	fi
}

download() {
	local code=0
	fetch "$1" "$2" || code=$?
	[ "$code" = 0 ] || die "Cannot download \"$1\" (exit code $code)"
}

# Like download, but returns 1 when the server answers with an HTTP error (404 for a form it
# does not have: curl exits 22, wget 8), so the caller can ask for another; others die.
download_if_served() {
	local code=0
	fetch "$1" "$2" 2>/dev/null || code=$?
	case "$code" in
	0) ;;
	22 | 8) return 1 ;;
	*) die "Cannot download \"$1\" (exit code $code)" ;;
	esac
}

# Sets FORMATS to the forms of the binary to ask for, zst, xz, gz: those this host can
# decompress, then the raw binary; MACHINE_ID_DOWNLOAD_FORMAT names one.
pick_formats() {
	FORMATS=()
	case "${MACHINE_ID_DOWNLOAD_FORMAT:-}" in
	"") ;;
	raw) FORMATS=(raw) && return 0 ;;
	zst | xz | gz)
		have "$(decompressor "$MACHINE_ID_DOWNLOAD_FORMAT")" ||
			die "MACHINE_ID_DOWNLOAD_FORMAT=$MACHINE_ID_DOWNLOAD_FORMAT needs $(decompressor "$MACHINE_ID_DOWNLOAD_FORMAT"), which is not installed; use one of zst, xz, gz or raw"
		FORMATS=("$MACHINE_ID_DOWNLOAD_FORMAT") && return 0
		;;
	*) usage_error "MACHINE_ID_DOWNLOAD_FORMAT must be zst, xz, gz or raw, not \"$MACHINE_ID_DOWNLOAD_FORMAT\"" ;;
	esac
	local f
	# zstd first: 38 % of the size where xz makes 36 %, but it decompresses ~3 times faster
	for f in zst xz gz; do
		if have "$(decompressor "$f")"; then FORMATS+=("$f"); fi
	done
	FORMATS+=(raw)
}

decompressor() {
	case "$1" in
	zst) echo zstd ;;
	xz) echo xz ;;
	gz) echo gzip ;;
	esac
}

# No machine-id build is near this size: a compressed file that grows past it is refused
# before it fills the disk (its checksum could not match anyway).
readonly MAX_BINARY_BYTES=$((1024 * 1024 * 1024))

# Writes $2 into $1 with mode $3 unless the file already holds exactly that; counts WRITES.
write_file() {
	local path=$1 content=$2 mode=$3 staged
	staged="$TMP/staged-file"
	printf '%s' "$content" >"$staged"
	if [ -f "$path" ] && [ "$(sha256_of "$path")" = "$(sha256_of "$staged")" ]; then
		chmod "$mode" "$path"
		return 0
	fi
	mkdir -p "$(dirname "$path")"
	# Copy beside the target and rename, so nobody ever sees a half-written file.
	install -m "$mode" "$staged" "$path.new.$$"
	mv -f "$path.new.$$" "$path"
	say "Wrote $path"
	CHANGED=1
	WRITES=$((WRITES + 1))
}

systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

install_binary() {
	local url="https://$AUTH_SERVER/downloads/machine-id-linux-$ARCH" expected actual
	# The checksum comes with this script, not from beside the binary: whoever can replace
	# the binary on the server cannot make a matching checksum be believed.
	case "$ARCH" in
	x64) expected=$SHA256_X64 ;;
	arm64) expected=$SHA256_ARM64 ;;
	esac
	[[ "$expected" =~ ^[0-9a-f]{64}$ ]] ||
		die "Cannot verify machine-id-linux-$ARCH: the auth service at $AUTH_SERVER had no build checksum for it when it started (machine-id-linux-$ARCH.sha256 beside the binary in its --dist-dir); nothing was installed"
	local format served=""
	pick_formats
	for format in "${FORMATS[@]}"; do
		if [ "$format" = raw ]; then
			download "$url" "$TMP/machine-id"
			served=$url
			break
		fi
		download_if_served "$url.$format" "$TMP/machine-id.$format" || continue
		served=$url.$format
		# The checksum is of the binary, so it is checked on what comes out of the decompressor.
		# (pipefail: a damaged file, or one cut off by head, fails the pipeline)
		"$(decompressor "$format")" -dc <"$TMP/machine-id.$format" | head -c "$MAX_BINARY_BYTES" >"$TMP/machine-id" ||
			die "Cannot decompress \"$served\" with $(decompressor "$format") (the file is damaged or not $format); nothing was installed"
		rm -f "$TMP/machine-id.$format"
		break
	done
	[ -n "$served" ] || die "The auth service at $AUTH_SERVER has no machine-id-linux-$ARCH in the form MACHINE_ID_DOWNLOAD_FORMAT=$MACHINE_ID_DOWNLOAD_FORMAT names; nothing was installed"
	actual=$(sha256_of "$TMP/machine-id")
	[ "$actual" = "$expected" ] || die "Checksum mismatch for \"$served\": expected $expected, got $actual; nothing was installed"
	say "Verified machine-id-linux-$ARCH (sha256 $actual, downloaded as ${served##*/})"

	if [ -f "$BIN" ] && [ "$(sha256_of "$BIN")" = "$actual" ]; then
		chmod 0755 "$BIN"
		say "$BIN is up to date"
		return 0
	fi
	mkdir -p "$(dirname "$BIN")"
	install -m 0755 "$TMP/machine-id" "$BIN.new.$$"
	mv -f "$BIN.new.$$" "$BIN"
	say "Installed $BIN"
	CHANGED=1
	BINARY_CHANGED=1
}

ensure_user() {
	if [ -n "$DESTDIR" ]; then
		note "DESTDIR is set: the system user is not created; on the target run:"
		note "  useradd --system --user-group --home-dir /var/lib/machine-id --no-create-home --shell /usr/sbin/nologin $SERVICE_USER"
		return 0
	fi
	id -u "$SERVICE_USER" >/dev/null 2>&1 && return 0
	local nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	if have useradd; then
		useradd --system --user-group --home-dir /var/lib/machine-id --no-create-home --shell "$nologin" "$SERVICE_USER"
	elif have adduser && have addgroup; then # busybox
		addgroup -S "$SERVICE_USER"
		adduser -S -D -H -h /var/lib/machine-id -s "$nologin" -G "$SERVICE_USER" "$SERVICE_USER"
	else
		die "Cannot create the system user \"$SERVICE_USER\": neither useradd nor adduser is installed"
	fi
	say "Created system user $SERVICE_USER"
	CHANGED=1
}

ensure_state_dir() {
	if [ ! -d "$STATE_DIR" ]; then
		mkdir -p "$STATE_DIR"
		say "Created $STATE_DIR"
		CHANGED=1
	fi
	# The bot's identity lives here: only its owner may enter.
	chmod 0700 "$STATE_DIR"
	[ -n "$DESTDIR" ] || chown "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"
}

write_config() {
	if [ -e "$CONFIG" ]; then
		say "Keeping the existing $CONFIG"
		return 0
	fi
	local token_line
	if [ -n "$TOKEN" ]; then
		token_line="  token: \"$TOKEN\""
	else
		token_line="  # token: <the name of your join token>"
	fi
	write_file "$CONFIG" "# machine-id agent config written by install.sh from $AUTH_SERVER.
# The CA pin ties the agent to this cluster; add outputs to receive certificates.
version: v2
auth_server: \"$AUTH_SERVER\"
onboarding:
  join_method: $JOIN_METHOD
$token_line
  ca_pins:
    - \"$CA_PIN\"
storage:
  type: directory
  path: /var/lib/machine-id
outputs: []
" 0640
	# The agent reads it; only root may change it. A token join secret must not be world-readable.
	[ -n "$DESTDIR" ] || chown "root:$SERVICE_USER" "$CONFIG"
}

install_units() {
	if [ -z "$DESTDIR" ] && ! systemd_running; then
		note "systemd is not running: no unit installed; run the agent with: $PREFIX/bin/machine-id start -c /etc/machine-id.yaml"
		return 0
	fi
	local writes_before=$WRITES exec_path="$PREFIX/bin/machine-id"
	write_file "$UNIT_DIR/machine-id.service" "${AGENT_UNIT//"$UNIT_EXEC_PATH"/"$exec_path"}" 0644
	write_file "$UNIT_DIR/machine-id@.service" "${TEMPLATE_UNIT//"$UNIT_EXEC_PATH"/"$exec_path"}" 0644
	if [ -n "$DESTDIR" ]; then
		note "DESTDIR is set: systemctl is not run; on the target run: systemctl daemon-reload && systemctl enable machine-id.service"
		return 0
	fi
	[ "$WRITES" = "$writes_before" ] || systemctl daemon-reload
	systemctl is-enabled --quiet machine-id.service || {
		systemctl enable machine-id.service
		CHANGED=1
	}
	if [ "$BINARY_CHANGED" = 1 ] && systemctl is-active --quiet machine-id.service; then
		systemctl restart machine-id.service
		say "Restarted machine-id.service on the new version"
	fi
}

uninstall() {
	if systemd_running; then
		systemctl disable --now machine-id.service 2>/dev/null || true
		systemctl stop 'machine-id@*.service' 2>/dev/null || true
	fi
	local f removed=0
	for f in "$BIN" "$UNIT_DIR/machine-id.service" "$UNIT_DIR/machine-id@.service"; do
		if [ -e "$f" ]; then
			rm -f "$f"
			say "Removed $f"
			removed=1
		fi
	done
	if [ "$removed" = 1 ] && systemd_running; then systemctl daemon-reload; fi
	if [ "$PURGE" = 1 ]; then
		# /etc/machine-id.d, never /etc/machine-id: that is the host's systemd machine ID.
		for f in "$CONFIG" "$DESTDIR/etc/machine-id.d" "$STATE_DIR"; do
			if [ -e "$f" ]; then
				rm -rf "$f"
				say "Removed $f"
			fi
		done
		if [ -z "$DESTDIR" ] && id -u "$SERVICE_USER" >/dev/null 2>&1; then
			userdel "$SERVICE_USER"
			say "Removed system user $SERVICE_USER"
		fi
	else
		say "Kept $CONFIG and $STATE_DIR (run with --uninstall --purge to remove them)"
	fi
	say "machine-id is uninstalled"
}

print_next_steps() {
	local version
	version=$("$BIN" version 2>/dev/null) || die "The installed $BIN does not run on this host"
	say ""
	say "Installed: $version"
	[ "$CHANGED" = 1 ] || say "Nothing changed: everything was already up to date."
	say "Next steps:"
	[ -n "$TOKEN" ] || say "  - Set onboarding.token in /etc/machine-id.yaml to the name of your join token."
	say "  - Add outputs to /etc/machine-id.yaml (docs/config.md) so the agent writes certificates."
	if systemd_running; then
		say "  - Start it: systemctl start machine-id   Logs: journalctl -u machine-id -f"
	else
		say "  - Start it: $PREFIX/bin/machine-id start -c /etc/machine-id.yaml"
	fi
}

main() {
	ACTION=install
	PURGE=0
	TOKEN=${MACHINE_ID_TOKEN:-}
	JOIN_METHOD=${MACHINE_ID_JOIN_METHOD:-$DEFAULT_JOIN_METHOD}
	while [ $# -gt 0 ]; do
		case "$1" in
		--token)
			[ $# -ge 2 ] || usage_error "--token needs a value"
			TOKEN=$2
			shift 2
			;;
		--token=*)
			TOKEN=${1#*=}
			shift
			;;
		--join-method)
			[ $# -ge 2 ] || usage_error "--join-method needs a value"
			JOIN_METHOD=$2
			shift 2
			;;
		--join-method=*)
			JOIN_METHOD=${1#*=}
			shift
			;;
		--uninstall)
			ACTION=uninstall
			shift
			;;
		--purge)
			PURGE=1
			shift
			;;
		-h | --help)
			usage
			exit 0
			;;
		*) usage_error "Unknown option \"$1\"" ;;
		esac
	done
	[ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || usage_error "--purge only goes with --uninstall"
	# Both end up in YAML and must stay one plain scalar there.
	[[ "$TOKEN" =~ ^[A-Za-z0-9._:@+=/-]*$ ]] || usage_error "Invalid token \"$TOKEN\": use letters, digits and ._:@+=/-"
	[[ "$JOIN_METHOD" =~ ^[a-z][a-z0-9_]*$ ]] || usage_error "Invalid join method \"$JOIN_METHOD\""

	PREFIX=${PREFIX:-/usr/local}
	DESTDIR=${DESTDIR:-}
	# The prefix ends up in the unit's ExecStart=, where spaces and specials would need quoting.
	[[ "$PREFIX" =~ ^/[A-Za-z0-9._/-]*$ ]] || usage_error "Invalid PREFIX \"$PREFIX\": it must be an absolute path of letters, digits and ._/-"
	[ -z "$DESTDIR" ] || [[ "$DESTDIR" == /* ]] || usage_error "Invalid DESTDIR \"$DESTDIR\": it must be an absolute path"
	DESTDIR=${DESTDIR%/}
	if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
		die "install.sh must run as root (sudo bash), or with DESTDIR set to stage the files"
	fi

	BIN="$DESTDIR$PREFIX/bin/machine-id"
	CONFIG="$DESTDIR/etc/machine-id.yaml"
	STATE_DIR="$DESTDIR/var/lib/machine-id"
	UNIT_DIR="$DESTDIR/etc/systemd/system"
	CHANGED=0
	WRITES=0
	BINARY_CHANGED=0

	if [ "$ACTION" = uninstall ]; then
		uninstall
		return 0
	fi
	if [ -z "$AUTH_SERVER" ] || [ -z "$CA_PIN" ] || [ -z "$CA_PEM" ]; then
		die "This is the install.sh template: fetch the script from your auth service (https://<auth address>/scripts/install.sh), which fills in its address and CA"
	fi

	detect_arch
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/machine-id-install.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	trap 'exit 130' INT TERM
	say "Installing machine-id${SERVER_VERSION:+ v$SERVER_VERSION} for linux-$ARCH from $AUTH_SERVER"
	check_ca
	# Everything above only reads and downloads; the system changes from here on.
	install_binary
	ensure_user
	ensure_state_dir
	write_config
	install_units
	print_next_steps
}

# Standard input is the script itself when piped into bash: nothing may read it.
main "$@" </dev/null
