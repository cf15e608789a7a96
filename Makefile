# gokube: the two commands of the README are `make demo` and `make test`.
# Both work as root on a fresh Debian 12 machine: they install what they need.

SHELL     := /bin/bash
GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin/gokube
LAB_DIR   ?= /var/lib/gokube/lab
DEMO_LAB  ?= gk
TEST_LAB  ?= gkt
ARTIFACTS ?= /var/lib/gokube/artifacts
# The Kubernetes binaries the control-plane and kube-node roles install.
KUBE_BINS ?= kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,kubelet,kube-proxy,kubeadm
# Debian packages the lab, the roles' artifacts, the benchmark and the tests need on the control
# machine (chromium renders --timeline in a headless browser test; strace counts
# the processes a run starts on a lab host).
APT_PKGS  := systemd-container debootstrap iproute2 iptables openssh-client curl \
             etcd-server etcd-client ansible-core ca-certificates bc chromium sudo strace

.PHONY: all build deps artifacts k8s-artifacts image unit integration test demo lab-down bench bench-quick bench-scale vet fmt clean

all: build

# One static binary (no cgo): it runs on any control machine, whatever its libc.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) .

# apt-get only when something is missing, so a warm `make test` does not touch the network.
deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	$(GO) mod download

# etcd 3.4.23 from Debian's packages and etcd 3.7.0 (etcd, etcdctl, etcdutl)
# built from the module proxy through tools/etcd: ~3 min cold on 2 cores,
# nothing to do when SHA256SUMS matches.
artifacts: build
	$(BIN) lab artifacts --dir $(ARTIFACTS)

# Kubernetes v1.37.2 binaries for the control-plane roles, built from the
# module proxy: 15-30 min cold on 2 cores, seconds when Go's build cache is
# warm or the cache already holds them.
k8s-artifacts: build
	$(BIN) lab artifacts --dir $(ARTIFACTS) --images --kubernetes --kubernetes-binaries $(KUBE_BINS)

image: build
	$(BIN) lab image

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit tests only: no lab (tests that need one skip), fake connections,
# an in-process SSH server and local processes.
unit:
	$(GO) test -race -count=1 ./...

# Everything: unit, integration and end-to-end tests, with a lab of real
# hosts that this target brings up and tears down (even when a test fails).
# Packages run one at a time (-p 1) because they share the lab's hosts.
#
# On a fresh machine the Kubernetes build (k8s-artifacts: 15-30 min on 2
# cores) is most of the time, so it runs in the background while the lab
# image, the lab and every test that does not need Kubernetes run; the lab
# package (it rebuilds kubectl on Go's warm cache) and the Kubernetes e2e
# tests (K8S_TESTS) wait for it. With the binaries cached it ends at once.
# The lab gets fresh disks on the current image: a lab keeps the image it
# was made with, and hosts 5 and 6 need the kubelet packages of today's
# recipe. Every host may run a kubelet: kubeadm's masters (hosts 1-3) need
# one too (TestHAKubeadm).
K8S_TESTS := ^(TestHAControlPlane|TestHASeparateEtcd|TestHAKubeadm|TestNodes|TestKubesprayGroupNames)$$
TEST_ENV   = GOKUBE_LAB_DIR=$(LAB_DIR)/$(TEST_LAB) GOKUBE_INTEGRATION=1 GOKUBE_BIN=$(CURDIR)/$(BIN) \
	  GOKUBE_LAB_TEST=1 GOKUBE_LAB_BIG=1 GOKUBE_K8S_BUILD=1 GOKUBE_ARTIFACTS=$(ARTIFACTS)
GO_TEST    = $(TEST_ENV) $(GO) test -race -count=1 -p 1 -timeout 75m
integration: build artifacts
	set -o pipefail; status=0; labok=0; \
	rm -f bin/k8s-build.rc; \
	( $(BIN) lab artifacts --dir $(ARTIFACTS) --images --kubernetes --kubernetes-binaries $(KUBE_BINS); \
	  echo $$? >bin/k8s-build.rc ) >bin/k8s-build.log 2>&1 & \
	if $(BIN) lab image; then \
	  if [ -e $(LAB_DIR)/$(TEST_LAB)/state.json ]; then $(BIN) lab reset --name $(TEST_LAB); fi; \
	  $(BIN) lab up 6 --name $(TEST_LAB) --subnet 10.232.0.0/24 --kubelet 1,2,3,4,5,6 && labok=1; \
	fi; \
	if [ $$labok = 1 ]; then \
	  $(GO_TEST) $$($(GO) list ./... | grep -v -e '^gokube/e2e$$' -e '^gokube/lab$$') || status=$$?; \
	  $(GO_TEST) -skip '$(K8S_TESTS)' ./e2e || status=$$?; \
	else status=1; fi; \
	echo "waiting for the Kubernetes binaries (bin/k8s-build.log)"; \
	while [ ! -e bin/k8s-build.rc ]; do sleep 5; done; \
	krc=$$(cat bin/k8s-build.rc); tail -n 20 bin/k8s-build.log; \
	if [ "$$krc" != 0 ]; then echo "k8s-artifacts failed (exit $$krc): bin/k8s-build.log"; status=1; fi; \
	if [ $$labok = 1 ] && [ "$$krc" = 0 ]; then \
	  $(GO_TEST) ./lab || status=$$?; \
	  $(GO_TEST) -run '$(K8S_TESTS)' ./e2e || status=$$?; \
	fi; \
	$(BIN) lab down --name $(TEST_LAB) || status=1; \
	exit $$status

# The parsers' fuzzers, bounded by executions (not time, so a busy machine
# only makes it slower): the INI inventory, the playbook loader and the
# template renderer. New interesting inputs land in Go's cache; a failing one
# is written to the package's testdata/fuzz and then runs in every go test.
FUZZ_EXECS ?= 2000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseINI$$' -fuzztime $(FUZZ_EXECS) ./inventory
	$(GO) test -run '^$$' -fuzz '^FuzzParsePlaybook$$' -fuzztime $(FUZZ_EXECS) ./engine
	$(GO) test -run '^$$' -fuzz '^FuzzRenderTemplate$$' -fuzztime $(FUZZ_EXECS) ./engine

test: deps vet build fuzz integration

# The HA control plane of examples/ha-cluster on 4 lab hosts: 3 masters
# with etcd, 1 haproxy load balancer.
demo: deps build artifacts k8s-artifacts
	$(BIN) lab up 4 --name $(DEMO_LAB)
	$(BIN) play -i examples/ha-cluster/inventory.cfg examples/ha-cluster/cluster.yml

lab-down: build
	$(BIN) lab down --name $(DEMO_LAB)

# gokube vs Ansible 2.14 vs the floor (bench/floor) on 3 lab hosts, 3 hosts
# with 25 ms added each way, and 30 hosts (~40 min, Ansible's 30-host runs
# are most of it); bench-quick: 3 hosts only, about 3 minutes on an idle
# machine. Tables in bench/results/; exit 1 if the tools' host state differs.
bench: build artifacts
	./bench/run.sh full

bench-quick: build
	./bench/run.sh quick

# gokube alone on 10, 100 and 1000 inventory names for 3 lab hosts: time,
# peak memory and CPU per size (bench/scale.sh).
bench-scale: build
	./bench/scale.sh

clean:
	rm -rf bin
