# treeboot: `make demo` runs the demo lifecycle, `make test` runs every test.
PREFIX ?= /usr
DESTDIR ?=
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build deps demo test test-quick vm-test bench install clean

all: build

deps:
	hack/install-deps

build: deps
	$(CARGO) build --release --locked

demo: build
	hack/demo.sh

# Every test: unit, integration (directory sysroots, differential against
# Debian's ostree) and, unless SKIP_VM=1, the QEMU suite.
test: deps
	$(CARGO) build --locked --all-targets
	$(CARGO) test --locked
	@if [ "$(SKIP_VM)" = "1" ]; then \
		echo "*** SKIP_VM=1: the QEMU boot suite was NOT run ***"; \
	elif [ -x tests/vm/run ]; then \
		$(MAKE) vm-test; \
	fi

vm-test:
	hack/install-deps vm
	tests/vm/run

bench: build
	bench/run

install:
	install -Dm755 target/release/treeboot $(DESTDIR)$(PREFIX)/bin/treeboot
	install -Dm755 target/release/treeboot-writer $(DESTDIR)$(PREFIX)/libexec/treeboot/treeboot-writer
	for u in systemd/*.service; do install -Dm644 $$u $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done

clean:
	$(CARGO) clean
