"""Learning: tasks (data + partition + model + metric), flat-vector parameters, local training, executors."""
