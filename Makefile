# treeboot: `make demo` runs the demo lifecycle, `make test` runs every test.
PREFIX ?= /usr
DESTDIR ?=
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build static deps demo test test-quick vm-test bench install clean

all: build

deps:
	hack/install-deps

build: deps
	$(CARGO) build --release --locked

# A static treeboot-prepare-root for PID 1 mode (init= without an
# initramfs): the physical root it starts from has no libc. Built without
# the libostree feature, which only treeboot-writer needs.
STATIC_TARGET = x86_64-unknown-linux-gnu
STATIC_PR = target/static/$(STATIC_TARGET)/release/treeboot-prepare-root
static: deps
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --no-default-features \
		--bin treeboot-prepare-root --target $(STATIC_TARGET) --target-dir target/static

demo: build
	hack/demo.sh

# Every test: clippy (warnings are errors), unit, integration (directory
# sysroots, differential against Debian's ostree: bookworm's on the host,
# trixie's in a root cached by hack/ostree-reference), the crash matrix (hence
# the failpoints feature, which release builds never have) and, unless
# SKIP_VM=1, the QEMU suite. Each part prints how long it took.
test: deps
	@# The boot suite's root file systems, built in the background while
	@# clippy and the cargo tests run (a cold cache costs ~10 min otherwise).
	@if [ "$(SKIP_VM)" != "1" ] && [ -x tests/vm/prefetch ]; then \
		mkdir -p target/vm/logs; setsid tests/vm/prefetch target/vm/logs/prefetch.log </dev/null >/dev/null 2>&1 & \
		echo "test: the boot suite's root file systems: checked or built in the background (target/vm/logs/prefetch.log)"; \
	fi
	@t0=$$(date +%s); hack/ostree-reference trixie >/dev/null && \
	echo "test: trixie ostree reference ready in $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); \
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings && \
	echo "test: clippy clean in $$(( $$(date +%s) - t0 ))s"
	@t0=$$(date +%s); \
	$(CARGO) test --locked --features failpoints && \
	echo "test: cargo test suites in $$(( $$(date +%s) - t0 ))s"
	@if [ "$(SKIP_VM)" = "1" ]; then \
		echo "*** SKIP_VM=1: the QEMU boot suite was NOT run ***"; \
	elif [ -x tests/vm/run ]; then \
		$(MAKE) vm-test; \
	fi

vm-test:
	hack/install-deps vm
	tests/vm/run

bench: build static
	bench/run

install: build static
	install -Dm755 target/release/treeboot $(DESTDIR)$(PREFIX)/bin/treeboot
	install -Dm755 target/release/treeboot-writer $(DESTDIR)$(PREFIX)/libexec/treeboot/treeboot-writer
	install -Dm755 target/release/treeboot-prepare-root $(DESTDIR)$(PREFIX)/lib/treeboot/treeboot-prepare-root
	install -Dm755 $(STATIC_PR) $(DESTDIR)$(PREFIX)/lib/treeboot/treeboot-prepare-root-static
	install -Dm755 target/release/treeboot-remount $(DESTDIR)$(PREFIX)/lib/treeboot/treeboot-remount
	install -Dm755 target/release/treeboot-generator $(DESTDIR)$(PREFIX)/lib/systemd/system-generators/treeboot-generator
	for u in systemd/*.service systemd/*.timer; do install -Dm644 $$u $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done
	# Drop-ins for ostree-boot's units, so that the two tools share a machine
	# (docs/coexistence.md); inert where ostree-boot is not installed.
	for d in systemd/*.service.d/*.conf; do install -Dm644 $$d $(DESTDIR)$(PREFIX)/lib/systemd/system/$${d#systemd/}; done
	install -Dm644 conf/upgrade.conf $(DESTDIR)$(PREFIX)/share/treeboot/upgrade.conf.example
	install -Dm755 dracut/98treeboot/module-setup.sh $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/98treeboot/module-setup.sh
	install -Dm644 dracut/treeboot.conf $(DESTDIR)$(PREFIX)/lib/dracut/dracut.conf.d/50-treeboot.conf
	install -Dm755 grub/10_treeboot $(DESTDIR)/etc/grub.d/10_treeboot
	install -Dm644 grub/grub.cfg $(DESTDIR)$(PREFIX)/share/treeboot/grub.cfg
	for d in docs/commands/*.md docs/*.md; do install -Dm644 $$d $(DESTDIR)$(PREFIX)/share/doc/treeboot/$$(basename $$d); done
	for d in docs/json/*.json; do install -Dm644 $$d $(DESTDIR)$(PREFIX)/share/doc/treeboot/json/$$(basename $$d); done
	# Hand-written pages: the units (section 8) and the config files (5).
	for m in man/*.5; do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man5/$$(basename $$m); done
	for m in man/*.8; do install -Dm644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/$$(basename $$m); done
	# Man pages (section 8) and bash/zsh/fish completions, generated from
	# the command-line definitions.
	target/release/treeboot-gendocs $(DESTDIR)$(PREFIX)/share

clean:
	$(CARGO) clean
