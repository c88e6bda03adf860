"""Pure functions from inputs to outputs, with errors as values.

API objects, Gateway API objects, Services, EndpointSlices and tailnet facts become a model; the
model becomes xDS resources per proxy group and the Kubernetes objects tsgw owns. One bad object
yields a condition on that object and never blocks the others.
"""
