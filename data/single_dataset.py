"""One domain of images read from <dataroot> itself (subfolders included), for inference."""
from data.base_dataset import BaseDataset, find_images, get_transform, read_image, transform_image


class SingleDataset(BaseDataset):
    """CUT's 'single' mode: every image under --dataroot, returned as {'A', 'A_paths'}.

    The images are generator inputs whatever --direction says, so they get input_nc channels.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self.A_paths = find_images(opt, opt.dataroot)
        self.transform = get_transform(opt, grayscale=opt.input_nc == 1)

    def __getitem__(self, index):
        A_path = self.A_paths[index]
        A = transform_image(self.transform, read_image(A_path), A_path)
        return {'A': A, 'A_paths': A_path}

    def __len__(self):
        return len(self.A_paths)
