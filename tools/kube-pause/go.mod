module gpuspawner/tools/kube-pause

go 1.24
