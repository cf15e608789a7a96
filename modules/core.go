package modules

func registerCore(r *Registry) {}
