package modules

// registerPKI adds the modules that build and check the cluster's trust:
// x509 and kubeconfig (control machine only), and uri, etcd, kube_health,
// kube_verify, kube_nodes, haproxy_server, which reach
// services on the host's loopback through the host's connection.
func registerPKI(r *Registry) {
	r.Register(X509{}, "x509")
	r.Register(URI{}, "uri")
	r.Register(Etcd{}, "etcd")
	r.Register(KubeHealth{}, "kube_health")
	r.Register(KubeVerify{}, "kube_verify")
	r.Register(KubeNodes{}, "kube_nodes")
	r.Register(EtcdReport{}, "etcd_report")
	r.Register(Kubeconfig{}, "kubeconfig")
	r.Register(HAProxyServer{}, "haproxy_server")
}
