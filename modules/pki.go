package modules

func registerPKI(r *Registry) {}
