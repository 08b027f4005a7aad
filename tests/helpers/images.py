"""What the figure tests check of a PNG a script or a plot function wrote."""
import numpy

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def read_png(path, min_size=(200, 300)):
    """The image at ``path`` as an array (height, width, channels), after checking that it is a PNG
    matplotlib can read, at least ``min_size`` pixels (height, width), and not one flat colour."""
    import matplotlib.image
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC, f'{path} is not a PNG'
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1], image.shape
    assert numpy.ptp(image[..., :3]) > 0.5, f'{path} is blank'
    return image
