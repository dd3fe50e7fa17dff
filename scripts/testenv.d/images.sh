# scripts/testenv.d/images.sh: builds the container images of the real test nodes
# without Docker or a registry (sourced by scripts/testenv).
#
# An app image is the Debian packages of tools/testenv/images/<name>.packages (plus
# base.packages) and their dependencies, unpacked with `dpkg -x` into one layer; the pause
# image is the static $BIN/pause. Both are written in `docker save` format, which
# `ctr images import` reads, to $IMAGES/<name>-<hash>.tar, where the hash covers the
# inputs: an image is rebuilt only when its package list (or the format) changes.

IMAGE_SRC=$MODDIR/images
IMAGES=$CACHE/images
IMAGE_REGISTRY=berth.local          # images are named berth.local/<name>:<tag>
IMAGE_TAG=deb12
PAUSE_IMAGE=$IMAGE_REGISTRY/pause:1
IMAGE_FORMAT=2                      # bump when the way images are built changes

# An image is defined by tools/testenv/images/<app>.packages (berth.local/<app>:deb12) or, for
# a variant of an app, <app>.<variant>.packages, which adds packages to <app>.packages
# (berth.local/<app>:deb12-<variant>: a second image of the same app, e.g. for image updates).

# image_names: the app images defined in tools/testenv/images, as <app> or <app>.<variant>
image_names() {
  local f
  for f in "$IMAGE_SRC"/*.packages; do
    f=${f##*/}
    [[ $f == base.packages ]] || echo "${f%.packages}"
  done
}

# package_list FILE...: the package names in FILEs (comments and blank lines dropped)
package_list() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$@" | tr -d ' \t'; }

# image_lists NAME: the package lists image NAME (<app> or <app>.<variant>) is built from
image_lists() {
  printf '%s\n' "$IMAGE_SRC/base.packages" "$IMAGE_SRC/${1%%.*}.packages"
  [[ $1 != *.* ]] || echo "$IMAGE_SRC/$1.packages"
}

# image_ref NAME: the image's reference, berth.local/<app>:deb12[-<variant>]
image_ref() {
  local tag=$IMAGE_TAG
  [[ $1 != *.* ]] || tag+=-${1#*.}
  echo "$IMAGE_REGISTRY/${1%%.*}:$tag"
}

# image_tar NAME: the cached tarball of app image NAME (path depends on its inputs)
image_tar() {
  local h lists
  mapfile -t lists < <(image_lists "$1")
  h=$(printf '%s\n' "$IMAGE_FORMAT" "$(package_list "${lists[@]}")" | sha256sum | cut -c1-12)
  echo "$IMAGES/$1-$h.tar"
}

# pause_tar: the cached tarball of the pause image (path depends on the binary)
pause_tar() { echo "$IMAGES/pause-$(hash_of "$BIN/pause").tar"; }

# package_closure PACKAGE...: the packages and everything they depend on (no
# recommends), as if nothing were installed: apt's own resolver, run against an
# empty dpkg status.
package_closure() {
  local status
  status=$(mktemp)
  apt-get install -s --no-install-recommends -o Dir::State::status="$status" "$@" 2>&1 |
    awk '$1 == "Inst" { print $2 }'
  rm -f "$status"
}

# unpack_rootfs DIR PACKAGE...: downloads the closure of PACKAGEs and unpacks it into DIR.
unpack_rootfs() {
  local dir=$1 deb pkgs; shift
  mapfile -t pkgs < <(package_closure "$@")
  ((${#pkgs[@]} > 0)) || die "build: apt cannot resolve the packages: $* (run apt-get update?)"
  mkdir -p "$dir.debs" "$dir"
  (cd "$dir.debs" && apt-get download -q "${pkgs[@]}") >"$dir.log" 2>&1 ||
    die "build: 'apt-get download' failed; see $dir.log"
  for deb in "$dir.debs"/*.deb; do dpkg -x "$deb" "$dir"; done
  printf '%s\n' "${pkgs[@]}" >"$dir/.berth-packages"
  rm -rf "$dir.debs"
}

# finish_rootfs DIR: the files an image needs that maintainer scripts would write.
finish_rootfs() {
  local dir=$1
  if [[ -f $dir/usr/share/base-passwd/passwd.master ]]; then
    cp "$dir/usr/share/base-passwd/passwd.master" "$dir/etc/passwd"
    cp "$dir/usr/share/base-passwd/group.master" "$dir/etc/group"
  fi
  mkdir -p "$dir/tmp" "$dir/data" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/etc"
  chmod 1777 "$dir/tmp"
  [[ -e $dir/bin/sh || -L $dir/bin/sh ]] || ln -s dash "$dir/bin/sh"
  alternatives "$dir"
}

# The commands maintainer scripts would have put on PATH with update-alternatives, as
# LINK TARGET (relative to the image's root): each is linked only if its target is in the image.
ALTERNATIVES=(
  /usr/bin/awk /usr/bin/mawk
  /bin/nc /bin/nc.openbsd
  /usr/bin/java /usr/lib/jvm/java-17-openjdk-amd64/bin/java
)

# alternatives DIR: the links of ALTERNATIVES whose targets DIR has (none replaces a file).
alternatives() {
  local dir=$1 i link target
  for ((i = 0; i < ${#ALTERNATIVES[@]}; i += 2)); do
    link=${ALTERNATIVES[i]} target=${ALTERNATIVES[i + 1]}
    [[ -e $dir$target && ! -e $dir$link && ! -L $dir$link ]] || continue
    mkdir -p "$dir${link%/*}"
    ln -s "$target" "$dir$link"
  done
}

# write_image TAR REF ROOTFS CMD_JSON [ENTRYPOINT_JSON]: packs ROOTFS as the single layer of
# image REF in `docker save` format (manifest.json, config, layer) into TAR.
write_image() {
  local tar=$1 ref=$2 rootfs=$3 cmd=$4 entry=${5:+\"Entrypoint\":$5,} work layer_id config_id
  work=$(mktemp -d "$IMAGES/.pack.XXXXXX")
  tar -C "$rootfs" --sort=name --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
  layer_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir "$work/$layer_id"
  mv "$work/layer.tar" "$work/$layer_id/layer.tar"
  cat >"$work/config.json" <<EOT
{"architecture":"amd64","os":"linux","config":{$entry"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$cmd,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_id"]},"history":[{"created_by":"berth scripts/testenv build"}]}
EOT
  config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/$config_id.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
    "$config_id" "$ref" "$layer_id" >"$work/manifest.json"
  tar -C "$work" -cf "$tar.tmp" manifest.json "$config_id.json" "$layer_id"
  mv -f "$tar.tmp" "$tar"
  rm -rf "$work"
}

# build_app_image NAME: builds image NAME (see image_ref) unless its tarball is cached.
build_app_image() {
  local name=$1 tar rootfs start=$SECONDS pkgs lists ref
  tar=$(image_tar "$name")
  ref=$(image_ref "$name")
  if [[ -f $tar ]]; then
    log "build: image $ref is up to date (${tar##*/})"
    return 0
  fi
  log "build: image $ref from Debian packages ..."
  mapfile -t lists < <(image_lists "$name")
  mapfile -t pkgs < <(package_list "${lists[@]}")
  rootfs=$(mktemp -d "$IMAGES/.rootfs-$name.XXXXXX")
  unpack_rootfs "$rootfs/fs" "${pkgs[@]}"
  finish_rootfs "$rootfs/fs"
  write_image "$tar" "$ref" "$rootfs/fs" '["/bin/sh"]'
  rm -rf "$rootfs"
  local old
  for old in "$IMAGES/$name"-*.tar; do [[ $old == "$tar" ]] || rm -f "$old"; done
  log "build: image $ref done in $((SECONDS - start))s ($(du -h "$tar" | cut -f1))"
}

# build_pause_image: berth.local/pause:1, the single file /pause.
build_pause_image() {
  local tar rootfs old
  tar=$(pause_tar)
  [[ -f $tar ]] && return 0
  rootfs=$(mktemp -d "$IMAGES/.rootfs-pause.XXXXXX")
  install -m 0755 "$BIN/pause" "$rootfs/pause"
  write_image "$tar" "$PAUSE_IMAGE" "$rootfs" '["/pause"]'
  rm -rf "$rootfs"
  for old in "$IMAGES"/pause-*.tar; do [[ $old == "$tar" ]] || rm -f "$old"; done
  log "build: image $PAUSE_IMAGE built"
}

# build_images: the pause image and every app image.
build_images() {
  local name
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    die "build: apt-get and dpkg are needed to build the app images (Debian)"
  mkdir -p "$IMAGES"
  rm -rf "$IMAGES"/.rootfs-* "$IMAGES"/.pack.*   # left by an interrupted build
  build_pause_image
  for name in $(image_names); do build_app_image "$name"; done
}

# image_tars: every image tarball `up` imports into a node's containerd
image_tars() {
  local name
  pause_tar
  for name in $(image_names); do image_tar "$name"; done
}

# --- the operator image (scripts/testenv operator-image BINARY) -----------------------------
# The `berth` binary a test built, as /usr/local/bin/berth (the entrypoint) on the C runtime it
# links (tools/testenv/images/operator/rootfs.packages), named berth.local/berth-operator:<hash>:
# the tag is a hash of the binary, the package list and the format, so the image is rebuilt,
# and gets a new name, only when one of them changes. Not part of `build` (no binary there).

OPERATOR_PACKAGES=$IMAGE_SRC/operator/rootfs.packages
OPERATOR_REPOSITORY=$IMAGE_REGISTRY/berth-operator

# operator_tag BINARY: the operator image's tag for BINARY
operator_tag() {
  { echo "$IMAGE_FORMAT"; package_list "$OPERATOR_PACKAGES"; cat "$1"; } | sha256sum | cut -c1-12
}

# build_operator_image BINARY TAG: the tarball of berth.local/berth-operator:TAG (cached); prints its path.
build_operator_image() {
  local bin=$1 tag=$2 tar=$IMAGES/operator-$2.tar rootfs start=$SECONDS pkgs old
  if [[ ! -f $tar ]]; then
    mkdir -p "$IMAGES"
    mapfile -t pkgs < <(package_list "$OPERATOR_PACKAGES")
    rootfs=$(mktemp -d "$IMAGES/.rootfs-operator.XXXXXX")
    unpack_rootfs "$rootfs/fs" "${pkgs[@]}"
    mkdir -p "$rootfs/fs/tmp" "$rootfs/fs/proc" "$rootfs/fs/sys" "$rootfs/fs/dev" "$rootfs/fs/etc"
    chmod 1777 "$rootfs/fs/tmp"
    install -D -m 0755 "$bin" "$rootfs/fs/usr/local/bin/berth"
    write_image "$tar" "$OPERATOR_REPOSITORY:$tag" "$rootfs/fs" '[]' '["/usr/local/bin/berth"]'
    rm -rf "$rootfs"
    for old in "$IMAGES"/operator-*.tar; do [[ $old == "$tar" ]] || rm -f "$old"; done
    log "operator-image: $OPERATOR_REPOSITORY:$tag built in $((SECONDS - start))s ($(du -h "$tar" | cut -f1))"
  fi
  echo "$tar"
}

# cmd_operator_image BINARY: builds the operator image of BINARY unless cached, imports it into
# the running real nodes that lack it, and prints its reference (berth.local/berth-operator:TAG).
cmd_operator_image() {
  local bin=${1:-} tag tar n count
  [[ -f $bin && -x $bin ]] || die "usage: $0 operator-image PATH_TO_BERTH_BINARY (an executable)"
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    die "operator-image: apt-get and dpkg are needed (Debian)"
  tag=$(operator_tag "$bin")
  tar=$(build_operator_image "$bin" "$tag")
  count=$(real_node_count)
  for ((n = 1; n <= count; n++)); do import_tar "$n" "$tar"; done
  echo "$OPERATOR_REPOSITORY:$tag"
}
