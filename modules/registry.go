package modules

// NewRegistry returns a registry with every host module gokube ships.
// Engine-level actions (debug, set_fact, assert, fail, pause, meta, setup,
// include_*/import_*) are handled by the engine itself.
func NewRegistry() *Registry {
	r := &Registry{}
	registerCore(r) // core.go: command, shell, raw, copy, template, file, ...
	registerPKI(r)  // pki.go: x509, uri, etcd, kube_health
	return r
}
