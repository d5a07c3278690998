"""``python3 -m nsinspect.kubectl``: the kubectl plugin's entry (what the krew launcher runs)."""

from nsinspect.entry import kubectl_main

if __name__ == "__main__":
    kubectl_main()
