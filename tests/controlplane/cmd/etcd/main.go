// Command etcd is the etcd server, built from the same module graph as kube-apiserver
// so that its version is the one k8s.io/kubernetes was released and tested with.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
