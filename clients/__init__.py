"""What a client does with its data: local training, local privacy, misbehaviour."""
