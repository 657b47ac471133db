"""Published weights in and out, and starting a network from another one's weights.

    files.py      published state dicts (timm's / the hub's model.safetensors): their errors,
                  no pickles; the bytes are read and written by tinyeffnet._safetensors
    layout.py     PyTorch layouts <-> ours (OIHW <-> HWIO, (out, in) <-> (in, out)), bit for bit
    families.py   timm tf_efficientnet_bN, timm efficientnet_bN, torchvision efficientnet_bN:
                  their tensor names, padding and BN eps
    exchange.py   a published state dict <-> a tinyeffnet checkpoint (`python -m tinyeffnet.convert`)
    transfer.py   take every tensor whose name and shape fit (train --init-from, convert --variant)
"""
