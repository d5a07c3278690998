"""nsinspect: which Linux namespaces do the containers of a pod really share?"""

__version__ = "0.1.0"
